// llama2.c reader: the real stories260K exports against the HF conversion made by transformers,
// synthetic v1 / unshared-classifier files, and rejection of malformed files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "format/llama2c.h"
#include "format/safetensors.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

using kiln::test::SharedDir;
std::string StoriesDir() { return SharedDir() + "/models/stories260K"; }

#define REQUIRE_FIXTURES()                                                   \
  if (SharedDir().empty() || !fs::exists(StoriesDir() + "/stories260K.bin")) \
  GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)"

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string TempPath(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("kiln_llama2c_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Every tensor of the HF fixture exists in `ck` with the same shape and identical bytes.
void ExpectMatchesHfFixture(const Checkpoint& ck) {
  auto hf = SafetensorsFile::Open(SharedDir() + "/fixtures/stories260K-hf/model.safetensors");
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  ASSERT_EQ(hf->tensors().size(), 47u);
  for (const auto& t : hf->tensors()) {
    const SourceTensor* s = ck.Find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->dtype, DType::kF32) << t.name;
    EXPECT_EQ(s->shape, t.shape) << t.name;
    ASSERT_EQ(s->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(s->data, t.data, t.nbytes), 0) << t.name << " differs from the HF fixture";
  }
}

TEST(Llama2cTest, Stories260KMatchesHfFixture) {
  REQUIRE_FIXTURES();
  const std::string path = StoriesDir() + "/stories260K.bin";
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->format, "llama2c");
  EXPECT_EQ(ck->source_path, path);
  EXPECT_EQ(ck->tensors.size(), 47u);  // tied: no lm_head
  ExpectMatchesHfFixture(*ck);
  const auto& c = ck->config;
  EXPECT_EQ(c["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(c["hidden_size"], 64);
  EXPECT_EQ(c["intermediate_size"], 172);
  EXPECT_EQ(c["num_hidden_layers"], 5);
  EXPECT_EQ(c["num_attention_heads"], 8);
  EXPECT_EQ(c["num_key_value_heads"], 4);
  EXPECT_EQ(c["head_dim"], 8);
  EXPECT_EQ(c["vocab_size"], 512);
  EXPECT_EQ(c["max_position_embeddings"], 512);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(c["rope_theta"].get<double>(), 10000.0);
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
}

TEST(Llama2cTest, OpenCheckpointDispatchesToLlama2c) {
  REQUIRE_FIXTURES();
  for (const char* f : {"stories260K.bin", "stories260K_v1.bin"}) {
    if (!fs::exists(StoriesDir() + "/" + f)) continue;
    auto ck = OpenCheckpoint(StoriesDir() + "/" + f);
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    EXPECT_EQ(ck->format, "llama2c") << f;
  }
}

TEST(Llama2cTest, Stories260KV1FileMatchesHfFixture) {
  REQUIRE_FIXTURES();
  const std::string path = StoriesDir() + "/stories260K_v1.bin";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ExpectMatchesHfFixture(*ck);
  EXPECT_EQ(ck->config["tie_word_embeddings"], true);
}

// Re-lays the legacy stories260K.bin as a v1 export (and optionally with an explicit classifier).
std::vector<uint8_t> LegacyToV1(const std::vector<uint8_t>& legacy, bool shared) {
  int32_t p[7];
  std::memcpy(p, legacy.data(), sizeof(p));
  const size_t dim = p[0], hidden = p[1], L = p[2], heads = p[3], kv = p[4], vocab = p[5];
  const size_t hd = dim / heads;
  // Legacy order, in floats.
  const size_t embed = vocab * dim, norm = L * dim, wq = L * dim * dim, wkv = L * kv * hd * dim,
               wo = L * dim * dim, w = L * hidden * dim;
  size_t off = 28;
  auto take = [&](size_t floats) {
    std::vector<uint8_t> v(legacy.begin() + off, legacy.begin() + off + floats * 4);
    off += floats * 4;
    return v;
  };
  auto e = take(embed), ra = take(norm), q = take(wq), k = take(wkv), v = take(wkv), o = take(wo),
       rf = take(norm), w1 = take(w), w2 = take(w), w3 = take(w), rfin = take(dim);
  std::vector<uint8_t> out(256, 0);
  const uint32_t magic = 0x616b3432;
  const int32_t version = 1;
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &version, 4);
  std::memcpy(out.data() + 8, p, sizeof(p));
  out[36] = shared ? 1 : 0;
  for (const auto* part : {&ra, &rf, &rfin, &e, &q, &k, &v, &o, &w1, &w2, &w3})
    out.insert(out.end(), part->begin(), part->end());
  if (!shared) out.insert(out.end(), e.begin(), e.end());
  return out;
}

TEST(Llama2cTest, SyntheticV1MatchesHfFixture) {
  REQUIRE_FIXTURES();
  const auto legacy = ReadBytes(StoriesDir() + "/stories260K.bin");
  const std::string path = TempPath("v1_shared.bin");
  WriteBytes(path, LegacyToV1(legacy, true));
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ExpectMatchesHfFixture(*ck);
  EXPECT_EQ(ck->tensors.size(), 47u);
  EXPECT_EQ(ck->config["tie_word_embeddings"], true);
  if (fs::exists(StoriesDir() + "/stories260K_v1.bin")) {
    EXPECT_EQ(ReadBytes(path), ReadBytes(StoriesDir() + "/stories260K_v1.bin"));  // same as export.py
  }
}

TEST(Llama2cTest, SyntheticV1UnsharedClassifier) {
  REQUIRE_FIXTURES();
  const auto legacy = ReadBytes(StoriesDir() + "/stories260K.bin");
  const std::string path = TempPath("v1_unshared.bin");
  WriteBytes(path, LegacyToV1(legacy, false));
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ExpectMatchesHfFixture(*ck);
  const SourceTensor* head = ck->Find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(std::memcmp(head->data, ck->Find("model.embed_tokens.weight")->data, head->nbytes), 0);
  EXPECT_EQ(ck->config["tie_word_embeddings"], false);
}

TEST(Llama2cTest, LegacyUnsharedClassifierNegativeVocab) {
  REQUIRE_FIXTURES();
  auto bytes = ReadBytes(StoriesDir() + "/stories260K.bin");
  int32_t vocab = 0;
  std::memcpy(&vocab, bytes.data() + 20, 4);
  const int32_t neg = -vocab;
  std::memcpy(bytes.data() + 20, &neg, 4);
  std::vector<float> cls(512 * 64);
  for (size_t i = 0; i < cls.size(); ++i) cls[i] = static_cast<float>(i) * 0.25f;
  const auto* c = reinterpret_cast<const uint8_t*>(cls.data());
  bytes.insert(bytes.end(), c, c + cls.size() * 4);  // wcls comes after the freq_cis tables
  auto ck = ParseLlama2c(bytes.data(), bytes.size(), "mem.bin");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  const SourceTensor* head = ck->Find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(std::memcmp(head->data, cls.data(), head->nbytes), 0);
  EXPECT_EQ(ck->config["vocab_size"], 512);
  EXPECT_EQ(ck->config["tie_word_embeddings"], false);
}

TEST(Llama2cTest, UnpermuteRotaryRowsPerHead) {
  // 2 heads of head_dim 4, rows of one byte: per head [a0 a1 a2 a3] -> [a0 a2 a1 a3].
  const uint8_t src[8] = {0, 1, 2, 3, 10, 11, 12, 13};
  uint8_t dst[8];
  UnpermuteRotaryRows(src, dst, 2, 4, 1);
  const uint8_t want[8] = {0, 2, 1, 3, 10, 12, 11, 13};
  EXPECT_EQ(std::memcmp(dst, want, 8), 0);
}

TEST(Llama2cTest, TruncatedAtManyCutPoints) {
  REQUIRE_FIXTURES();
  const auto bytes = ReadBytes(StoriesDir() + "/stories260K.bin");
  std::vector<size_t> cuts = {
      0, 1, 4, 27, 28, 29, 100, 131100, bytes.size() - 16384, bytes.size() - 4, bytes.size() - 1};
  for (size_t c = 0; c < bytes.size(); c += 7919) cuts.push_back(c);
  for (size_t cut : cuts) {
    auto ck = ParseLlama2c(bytes.data(), cut, "cut.bin");
    ASSERT_FALSE(ck.ok()) << "cut at " << cut;
    EXPECT_EQ(ck.status().code(), ErrorCode::kCorrupt) << cut;
    EXPECT_NE(ck.status().message().find("cut.bin"), std::string::npos) << ck.status().message();
  }
  auto ck = ParseLlama2c(bytes.data(), bytes.size() - 4, "cut.bin");
  EXPECT_NE(ck.status().message().find("truncated"), std::string::npos) << ck.status().message();
  EXPECT_NE(ck.status().message().find("1056540"), std::string::npos) << ck.status().message();
}

TEST(Llama2cTest, TrailingBytesRejected) {
  REQUIRE_FIXTURES();
  auto bytes = ReadBytes(StoriesDir() + "/stories260K.bin");
  bytes.resize(bytes.size() + 4, 0);
  auto ck = ParseLlama2c(bytes.data(), bytes.size(), "long.bin");
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("trailing"), std::string::npos) << ck.status().message();
}

TEST(Llama2cTest, TruncatedFileOnDiskNamesPath) {
  REQUIRE_FIXTURES();
  auto bytes = ReadBytes(StoriesDir() + "/stories260K.bin");
  bytes.resize(5000);
  const std::string path = TempPath("short.bin");
  WriteBytes(path, bytes);
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find(path), std::string::npos) << ck.status().message();
  auto missing = OpenLlama2cCheckpoint(TempPath("does_not_exist.bin"));
  EXPECT_FALSE(missing.ok());
}

// A header with the given fields followed by enough zero bytes for the sizes it claims (capped).
std::vector<uint8_t> Header(std::vector<int32_t> f, size_t body = 4096) {
  std::vector<uint8_t> b(28 + body, 0);
  std::memcpy(b.data(), f.data(), 28);
  return b;
}

TEST(Llama2cTest, BadHeaderValuesNameTheField) {
  struct Case {
    std::vector<int32_t> fields;
    const char* field;
  };
  const Case cases[] = {
      {{0, 172, 5, 8, 4, 512, 512}, "dim"},
      {{-64, 172, 5, 8, 4, 512, 512}, "dim"},
      {{64, 0, 5, 8, 4, 512, 512}, "hidden_dim"},
      {{64, 172, -1, 8, 4, 512, 512}, "n_layers"},
      {{64, 172, 5, 0, 4, 512, 512}, "n_heads"},
      {{64, 172, 5, 7, 7, 512, 512}, "n_heads"},     // 7 does not divide 64
      {{64, 172, 5, 8, 3, 512, 512}, "n_kv_heads"},  // 3 does not divide 8
      {{64, 172, 5, 8, 0, 512, 512}, "n_kv_heads"},
      {{64, 172, 5, 8, 4, 0, 512}, "vocab_size"},
      {{64, 172, 5, 8, 4, INT32_MIN, 512}, "vocab_size"},
      {{64, 172, 5, 8, 4, 512, 0}, "seq_len"},
      {{63, 172, 5, 9, 9, 512, 512}, "n_heads"},
      {{60, 172, 5, 20, 20, 512, 512}, "head_dim"},  // head_dim 3 is odd
      {{INT32_MAX - 3, INT32_MAX, INT32_MAX, 2, 2, INT32_MAX, INT32_MAX}, "overflow"},
      {{65536, 65536, 65536, 1, 1, 65536, 65536}, "expected exactly"},
  };
  for (const auto& c : cases) {
    auto bytes = Header(c.fields);
    auto ck = ParseLlama2c(bytes.data(), bytes.size(), "hdr.bin");
    ASSERT_FALSE(ck.ok()) << c.field;
    EXPECT_EQ(ck.status().code(), ErrorCode::kCorrupt) << ck.status().message();
    EXPECT_NE(ck.status().message().find(c.field), std::string::npos) << ck.status().message();
    EXPECT_NE(ck.status().message().find("hdr.bin"), std::string::npos) << ck.status().message();
  }
}

TEST(Llama2cTest, V1UnsupportedVersionAndBadFlag) {
  std::vector<uint8_t> b(256 + 64, 0);
  const uint32_t magic = 0x616b3432;
  int32_t version = 2;  // int8 quantized export
  std::memcpy(b.data(), &magic, 4);
  std::memcpy(b.data() + 4, &version, 4);
  auto ck = ParseLlama2c(b.data(), b.size(), "q80.bin");
  ASSERT_FALSE(ck.ok());
  EXPECT_EQ(ck.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(ck.status().message().find("version 2"), std::string::npos) << ck.status().message();

  version = 1;
  std::memcpy(b.data() + 4, &version, 4);
  const int32_t p[7] = {64, 172, 5, 8, 4, 512, 512};
  std::memcpy(b.data() + 8, p, sizeof(p));
  b[36] = 7;
  ck = ParseLlama2c(b.data(), b.size(), "v1.bin");
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("shared_classifier"), std::string::npos) << ck.status().message();
  ck = ParseLlama2c(b.data(), 100, "v1.bin");  // magic but shorter than the 256-byte header
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("256"), std::string::npos) << ck.status().message();
}

TEST(Llama2cTest, SecondModelAidreams) {
  REQUIRE_FIXTURES();
  const std::string path = SharedDir() + "/models/aidreams260K/aidreams260K.bin";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  auto ck = OpenLlama2cCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->config["num_hidden_layers"], 4);
  EXPECT_EQ(ck->config["num_key_value_heads"], 4);
  EXPECT_EQ(ck->config["max_position_embeddings"], 128);
  EXPECT_EQ(ck->tensors.size(), 2u + 4 * 9);
}

}  // namespace
}  // namespace kiln
