// safetensors reader/writer: writer round trip and alignment, the HF fixture, and rejection of
// malformed files (never a crash; messages name the file/tensor/field).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "format/safetensors.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using kiln::test::SharedDir;
std::string HfFixture() { return SharedDir() + "/fixtures/stories260K-hf/model.safetensors"; }

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string TempPath(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("kiln_st_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

// An image with the given header JSON (verbatim) and `body` bytes of data.
std::vector<uint8_t> Image(const std::string& header, size_t body, uint64_t len_override = 0) {
  std::vector<uint8_t> b(8);
  uint64_t len = len_override ? len_override : header.size();
  std::memcpy(b.data(), &len, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + body, 0x11);
  return b;
}

Status ParseImage(const std::vector<uint8_t>& b) {
  return SafetensorsFile::Parse(b.data(), b.size(), "t.safetensors").status();
}

void ExpectError(const Status& st, const std::vector<std::string>& needles) {
  ASSERT_FALSE(st.ok());
  for (const auto& n : needles)
    EXPECT_NE(st.message().find(n), std::string::npos) << "'" << n << "' not in: " << st.message();
}

TEST(SafetensorsTest, WriterRoundTripIsAligned) {
  struct In {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::mt19937 rng(7);
  std::vector<In> ins;
  // Odd sizes of every element width, interleaved so the writer has to reorder them.
  const std::pair<DType, std::vector<int64_t>> specs[] = {
      {DType::kU8, {3}},  {DType::kF32, {5, 7}},    {DType::kF16, {3, 3}},
      {DType::kI8, {1}},  {DType::kF64, {2, 3}},    {DType::kBF16, {13}},
      {DType::kI64, {5}}, {DType::kI32, {1, 1, 3}}, {DType::kF16, {}},
  };
  int i = 0;
  for (const auto& [dt, shape] : specs) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<uint8_t> b(DTypeBytes(dt, n));
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    ins.push_back({"t" + std::to_string(i++) + "." + std::string(DTypeName(dt)), dt, shape, b});
  }
  SafetensorsWriter w;
  for (const auto& in : ins) w.Add(in.name, in.dtype, in.shape, in.bytes);
  w.SetMetadata("format", "pt");
  const std::string path = TempPath("roundtrip.safetensors");
  ASSERT_TRUE(w.Write(path).ok());

  // Layout: the data section starts 64-byte aligned, each tensor at a multiple of its element
  // size, and the tensors tile the data section without holes.
  const auto raw = ReadBytes(path);
  uint64_t hlen = 0;
  std::memcpy(&hlen, raw.data(), 8);
  EXPECT_EQ((8 + hlen) % 64, 0u);
  json header = json::parse(raw.begin() + 8, raw.begin() + 8 + hlen);
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& in : ins) {
    ASSERT_TRUE(header.contains(in.name)) << in.name;
    uint64_t begin = header[in.name]["data_offsets"][0], end = header[in.name]["data_offsets"][1];
    EXPECT_EQ(begin % DTypeSize(in.dtype), 0u) << in.name << " at " << begin;
    spans.push_back({begin, end});
  }
  std::sort(spans.begin(), spans.end());
  uint64_t pos = 0;
  for (const auto& [b, e] : spans) {
    EXPECT_EQ(b, pos);
    pos = e;
  }
  EXPECT_EQ(8 + hlen + pos, raw.size());

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->tensors().size(), ins.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  for (const auto& in : ins) {
    const TensorInfo* t = f->Find(in.name);
    ASSERT_NE(t, nullptr) << in.name;
    EXPECT_EQ(t->dtype, in.dtype) << in.name;
    EXPECT_EQ(t->shape, in.shape) << in.name;
    ASSERT_EQ(t->nbytes, in.bytes.size()) << in.name;
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(t->data, in.bytes.data(), t->nbytes), 0) << in.name;
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % DTypeSize(in.dtype), 0u)
        << in.name;  // mmap is page aligned
  }
}

TEST(SafetensorsTest, WriterProducerErrorRemovesFile) {
  SafetensorsWriter w;
  w.Add("ok", DType::kF32, {2}, std::vector<uint8_t>(8, 0));
  w.Add("bad", DType::kF32, {2}, [](uint8_t*) { return Internal("boom"); });
  const std::string path = TempPath("bad.safetensors");
  Status st = w.Write(path);
  ExpectError(st, {"bad", "boom"});
  EXPECT_FALSE(fs::exists(path));
}

TEST(SafetensorsTest, ReadsHfFixture) {
  if (SharedDir().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  auto f = SafetensorsFile::Open(HfFixture());
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->tensors().size(), 47u);
  const TensorInfo* e = f->Find("model.embed_tokens.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{512, 64}));
}

TEST(SafetensorsTest, TruncatedAtManyCutPoints) {
  if (SharedDir().empty()) GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)";
  const auto bytes = ReadBytes(HfFixture());
  std::vector<size_t> cuts = {0, 1, 7, 8, 9, 100, bytes.size() - 1};
  for (size_t c = 0; c < bytes.size(); c += 4999) cuts.push_back(c);
  for (size_t cut : cuts) {
    auto f = SafetensorsFile::Parse(bytes.data(), cut, "cut.safetensors");
    ASSERT_FALSE(f.ok()) << "cut at " << cut;
    EXPECT_NE(f.status().message().find("cut.safetensors"), std::string::npos) << f.status().message();
  }
  const std::string path = TempPath("short.safetensors");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 200000);
  ExpectError(SafetensorsFile::Open(path).status(), {path, "past the end"});
}

TEST(SafetensorsTest, CorruptHeaders) {
  ExpectError(ParseImage(Image("{}", 0, 1000)), {"t.safetensors", "header length 1000"});
  ExpectError(ParseImage(Image("{\"a\": ", 0)), {"t.safetensors", "not valid JSON"});
  ExpectError(ParseImage(Image("[1, 2]", 0)), {"not a JSON object"});
  ExpectError(ParseImage(Image(R"({"w": 5})", 0)), {"'w'", "not an object"});
  ExpectError(ParseImage(Image(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8)), {"'w'", "dtype"});
  ExpectError(ParseImage(Image(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", 8)), {"'w'", "shape"});
  ExpectError(ParseImage(Image(R"({"w": {"dtype": "F32", "shape": [2]}})", 8)), {"'w'", "data_offsets"});
  ExpectError(ParseImage(Image(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8)),
              {"'w'", "data_offsets"});
  ExpectError(ParseImage(Image(R"({"__metadata__": {"k": 1}})", 0)), {"__metadata__", "'k'"});
  ExpectError(ParseImage(Image(R"({"__metadata__": [1]})", 0)), {"__metadata__"});
  std::vector<uint8_t> tiny = {1, 2, 3};
  ExpectError(SafetensorsFile::Parse(tiny.data(), tiny.size(), "t.safetensors").status(), {"too short"});
}

TEST(SafetensorsTest, BadTensorEntries) {
  auto one = [](const std::string& entry, size_t body) {
    return ParseImage(Image("{\"w\": " + entry + "}", body));
  };
  auto st = one(R"({"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]})", 8);
  ExpectError(st, {"'w'", "Q4"});
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
  ExpectError(one(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})", 8), {"'w'", "negative"});
  ExpectError(one(R"({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 8]})", 8), {"'w'"});
  ExpectError(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]})", 8), {"'w'", "begin"});
  ExpectError(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [-1, 8]})", 8), {"'w'", "data_offsets"});
  ExpectError(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 16]})", 8), {"'w'", "past the end"});
  ExpectError(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]})", 8), {"'w'", "needs 8"});
  ExpectError(
      one(R"({"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 8]})", 8),
      {"'w'", "overflow"});
  ExpectError(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]})", 8),
              {"'w'"});
}

// Zero-element tensors share an offset with their neighbour; that is not an overlap.
// DISABLED until src/format/safetensors.cpp skips empty tensors in its overlap check (see report).
TEST(SafetensorsTest, ZeroSizeTensorsRoundTrip) {
  SafetensorsWriter w;
  w.Add("a", DType::kF16, {3}, std::vector<uint8_t>(6, 1));
  w.Add("empty", DType::kF32, {0, 4}, std::vector<uint8_t>());
  w.Add("b", DType::kF16, {2}, std::vector<uint8_t>(4, 2));
  const std::string path = TempPath("empty.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  for (int i = 0; i < 2; ++i) {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_NE(f->Find("empty"), nullptr);
    EXPECT_EQ(f->Find("empty")->nbytes, 0u);
  }
}

// A shape whose byte size wraps around 2^64 must not pass as a tiny tensor.
// DISABLED until src/format/safetensors.cpp checks numel * element size for overflow (see report).
TEST(SafetensorsTest, ByteSizeOverflowRejected) {
  // 2^61 F64 elements = 2^64 bytes, which wraps to 0 in 64-bit arithmetic.
  auto st = ParseImage(
      Image(R"({"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}})", 0));
  EXPECT_FALSE(st.ok()) << "a 2^61-element F64 tensor with 0 bytes of data was accepted";
}

TEST(SafetensorsTest, OverlappingTensors) {
  auto st = ParseImage(Image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                             12));
  ExpectError(st, {"'a'", "'b'", "overlap"});
}

TEST(SafetensorsTest, MissingFileNamesPath) {
  const std::string path = TempPath("nope.safetensors");
  ExpectError(SafetensorsFile::Open(path).status(), {path});
}

}  // namespace
}  // namespace kiln
