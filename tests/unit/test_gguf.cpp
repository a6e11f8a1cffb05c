// GGUF reader: the real stories260K.gguf and vocab-only files, synthetic files built here, and
// rejection of malformed files (never a crash; messages name the file/tensor/field).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "format/checkpoint.h"
#include "format/gguf.h"
#include "format/llama2c.h"
#include "format/safetensors.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using kiln::test::SharedDir;
std::string StoriesGguf() { return SharedDir() + "/models/stories260K/stories260K.gguf"; }

#define REQUIRE_FIXTURES()                               \
  if (SharedDir().empty() || !fs::exists(StoriesGguf())) \
  GTEST_SKIP() << "shared fixtures not found (set KILN_SHARED_DIR)"

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string TempPath(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("kiln_gguf_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Little-endian byte appender.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
};

// Builds GGUF images; each field can be overridden to make a malformed file.
struct GgufBuilder {
  uint32_t magic = 0x46554747, version = 3;
  std::optional<uint64_t> tensor_count, kv_count;
  uint64_t alignment = 32;
  Bytes kv;
  uint64_t n_kv = 0;
  struct T {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
    std::optional<uint64_t> offset;
    bool write = true;  // false: leave the data out (for offsets past the end)
  };
  std::vector<T> tensors;

  Bytes& Key(const std::string& k, GgufValueType t) {
    ++n_kv;
    kv.Str(k).Put<uint32_t>(static_cast<uint32_t>(t));
    return kv;
  }
  void U32(const std::string& k, uint32_t v) { Key(k, GgufValueType::kU32).Put(v); }
  void F32(const std::string& k, float v) { Key(k, GgufValueType::kF32).Put(v); }
  void Str(const std::string& k, const std::string& v) { Key(k, GgufValueType::kString).Str(v); }
  void StrArray(const std::string& k, const std::vector<std::string>& v) {
    Key(k, GgufValueType::kArray).Put<uint32_t>(8).Put<uint64_t>(v.size());
    for (const auto& s : v) kv.Str(s);
  }
  void Tensor(const std::string& name, uint32_t type, std::vector<uint64_t> dims, std::vector<uint8_t> data) {
    tensors.push_back({name, type, std::move(dims), std::move(data), std::nullopt, true});
  }

  std::vector<uint8_t> Build() const {
    Bytes o;
    o.Put(magic)
        .Put(version)
        .Put<uint64_t>(tensor_count.value_or(tensors.size()))
        .Put<uint64_t>(kv_count.value_or(n_kv));
    o.b.insert(o.b.end(), kv.b.begin(), kv.b.end());
    std::vector<uint64_t> offs;
    uint64_t off = 0;
    for (const auto& t : tensors) {
      offs.push_back(t.offset.value_or(off));
      if (!t.write) continue;
      off = (offs.back() + t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      o.Str(t.name).Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (auto d : t.dims) o.Put(d);
      o.Put(t.type).Put(offs[i]);
    }
    while (o.b.size() % alignment) o.b.push_back(0);
    const size_t data_start = o.b.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!tensors[i].write) continue;
      if (o.b.size() < data_start + offs[i] + tensors[i].data.size())
        o.b.resize(data_start + offs[i] + tensors[i].data.size(), 0);
      std::memcpy(o.b.data() + data_start + offs[i], tensors[i].data.data(), tensors[i].data.size());
    }
    return o.b;
  }
};

std::vector<uint8_t> F32Bytes(size_t n, float base) {
  std::vector<uint8_t> out(n * 4);
  for (size_t i = 0; i < n; ++i) {
    float v = base + 0.001f * static_cast<float>(i);
    std::memcpy(out.data() + 4 * i, &v, 4);
  }
  return out;
}

std::vector<uint8_t> F16Bytes(size_t n, float base) {
  std::vector<uint8_t> out(n * 2);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h = F32ToF16(base + 0.01f * static_cast<float>(i));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// A tiny llama GGUF: hidden 8, 2 heads (head_dim 4), 1 kv head, ffn 12, vocab 10, 1 block.
GgufBuilder TinyLlama(uint32_t type = 1 /*F16*/, bool with_output = false, uint64_t q_in = 8) {
  GgufBuilder g;
  g.Str("general.architecture", "llama");
  g.U32("llama.embedding_length", 8);
  g.U32("llama.block_count", 1);
  g.U32("llama.attention.head_count", 2);
  g.U32("llama.attention.head_count_kv", 1);
  g.U32("llama.feed_forward_length", 12);
  g.U32("llama.context_length", 64);
  g.U32("llama.rope.dimension_count", 4);
  g.F32("llama.rope.freq_base", 500000.0f);
  g.F32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  g.U32("tokenizer.ggml.bos_token_id", 7);
  g.U32("tokenizer.ggml.eos_token_id", 8);
  g.StrArray("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"});
  auto data = [&](size_t n, float base) { return type == 0 ? F32Bytes(n, base) : F16Bytes(n, base); };
  g.Tensor("token_embd.weight", type, {8, 10}, data(80, 0.f));
  g.Tensor("output_norm.weight", 0, {8}, F32Bytes(8, 1.f));
  if (with_output) g.Tensor("output.weight", type, {8, 10}, data(80, 2.f));
  g.Tensor("blk.0.attn_q.weight", type, {q_in, 8}, data(q_in * 8, 3.f));
  g.Tensor("blk.0.attn_k.weight", type, {8, 4}, data(32, 4.f));
  g.Tensor("blk.0.attn_v.weight", type, {8, 4}, data(32, 5.f));
  g.Tensor("blk.0.attn_output.weight", type, {8, 8}, data(64, 6.f));
  g.Tensor("blk.0.attn_norm.weight", 0, {8}, F32Bytes(8, 7.f));
  g.Tensor("blk.0.ffn_gate.weight", type, {8, 12}, data(96, 8.f));
  g.Tensor("blk.0.ffn_up.weight", type, {8, 12}, data(96, 9.f));
  g.Tensor("blk.0.ffn_down.weight", type, {12, 8}, data(96, 10.f));
  g.Tensor("blk.0.ffn_norm.weight", 0, {8}, F32Bytes(8, 11.f));
  return g;
}

Expected<GgufFile> Parse(const std::vector<uint8_t>& b, const std::string& name = "t.gguf") {
  return ParseGguf(b.data(), b.size(), name);
}

void ExpectError(const Status& st, const std::vector<std::string>& needles) {
  ASSERT_FALSE(st.ok());
  for (const auto& n : needles)
    EXPECT_NE(st.message().find(n), std::string::npos) << "'" << n << "' not in: " << st.message();
}

// ---- real files ----

TEST(GgufTest, Stories260KMetadata) {
  REQUIRE_FIXTURES();
  auto md = ReadGgufMetadata(StoriesGguf());
  ASSERT_TRUE(md.ok()) << md.status().message();
  EXPECT_EQ((*md)["general.architecture"], "llama");
  EXPECT_EQ((*md)["llama.embedding_length"], 64);
  EXPECT_EQ((*md)["llama.context_length"], 2048);
  EXPECT_EQ((*md)["llama.attention.layer_norm_rms_epsilon"].get<double>(), 1e-5);  // shortest form of 1e-5f
  EXPECT_EQ((*md)["tokenizer.ggml.tokens"].size(), 512u);
  EXPECT_EQ((*md)["tokenizer.ggml.tokens"][1], "<s>");
  EXPECT_EQ((*md)["tokenizer.ggml.tokens"][3], "<0x00>");
  EXPECT_EQ((*md)["tokenizer.ggml.scores"].size(), 512u);
  EXPECT_EQ((*md)["tokenizer.ggml.token_type"].size(), 512u);
  EXPECT_NO_THROW((void)md->dump());

  auto f = GgufFile::Open(StoriesGguf());
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->array_types().at("tokenizer.ggml.tokens"), GgufValueType::kString);
  EXPECT_EQ(f->metadata_types().at("llama.embedding_length"), GgufValueType::kU32);
  const GgufTensorInfo* q = f->Find("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dims, (std::vector<uint64_t>{64, 64}));
  EXPECT_EQ(q->type, 0u);
}

TEST(GgufTest, Stories260KCheckpointMatchesHfFixture) {
  REQUIRE_FIXTURES();
  auto ck = OpenGgufCheckpoint(StoriesGguf());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->format, "gguf");
  auto hf = SafetensorsFile::Open(SharedDir() + "/fixtures/stories260K-hf/model.safetensors");
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  for (const auto& t : hf->tensors()) {
    const SourceTensor* s = ck->Find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->dtype, DType::kF32) << t.name;
    EXPECT_EQ(s->shape, t.shape) << t.name;
    ASSERT_EQ(s->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(s->data, t.data, t.nbytes), 0) << t.name << " differs from the HF fixture";
  }
  // The GGUF carries an explicit output tensor (a copy of the embedding).
  const SourceTensor* head = ck->Find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(std::memcmp(head->data, hf->Find("model.embed_tokens.weight")->data, head->nbytes), 0);
  EXPECT_EQ(ck->tensors.size(), hf->tensors().size() + 1);
  const auto& c = ck->config;
  EXPECT_EQ(c["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(c["hidden_size"], 64);
  EXPECT_EQ(c["intermediate_size"], 172);
  EXPECT_EQ(c["num_hidden_layers"], 5);
  EXPECT_EQ(c["num_attention_heads"], 8);
  EXPECT_EQ(c["num_key_value_heads"], 4);
  EXPECT_EQ(c["head_dim"], 8);
  EXPECT_EQ(c["vocab_size"], 512);
  EXPECT_EQ(c["max_position_embeddings"], 2048);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(c["rope_theta"].get<double>(), 10000.0);
  EXPECT_EQ(c["tie_word_embeddings"], false);
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
  EXPECT_EQ(ck->gguf_metadata["tokenizer.ggml.tokens"].size(), 512u);
}

TEST(GgufTest, Stories260KEqualsLlama2cBin) {
  REQUIRE_FIXTURES();
  auto g = OpenGgufCheckpoint(StoriesGguf());
  auto l = OpenLlama2cCheckpoint(SharedDir() + "/models/stories260K/stories260K.bin");
  ASSERT_TRUE(g.ok() && l.ok());
  for (const auto& t : l->tensors) {
    const SourceTensor* s = g->Find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    ASSERT_EQ(s->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(s->data, t.data, t.nbytes), 0) << t.name;
  }
}

TEST(GgufTest, OpenCheckpointDispatchesByMagic) {
  REQUIRE_FIXTURES();
  auto ck = OpenCheckpoint(StoriesGguf());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->format, "gguf");
  EXPECT_FALSE(ck->gguf_metadata.empty());
}

TEST(GgufTest, VocabOnlyFilesParse) {
  REQUIRE_FIXTURES();
  const std::string dir = SharedDir() + "/models/ggml-vocab";
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not present";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    auto md = ReadGgufMetadata(e.path().string());
    ASSERT_TRUE(md.ok()) << md.status().message();
    EXPECT_TRUE(md->contains("tokenizer.ggml.model")) << e.path();
    EXPECT_NO_THROW((void)md->dump()) << e.path();
    ++n;
  }
  EXPECT_GT(n, 0);
}

TEST(GgufTest, TruncatedAtManyCutPoints) {
  REQUIRE_FIXTURES();
  const auto bytes = ReadBytes(StoriesGguf());
  auto full = Parse(bytes);
  ASSERT_TRUE(full.ok());
  // Everything before the end of the last tensor is needed.
  size_t end = 0;
  for (const auto& t : full->tensors()) end = std::max<size_t>(end, (t.data - bytes.data()) + t.nbytes);
  std::vector<size_t> cuts = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 25, 40, end - 1};
  for (size_t c = 0; c < 2000; c += 13) cuts.push_back(c);
  for (size_t c = 0; c < end; c += 4099) cuts.push_back(c);
  for (size_t cut : cuts) {
    auto f = ParseGguf(bytes.data(), cut, "cut.gguf");
    ASSERT_FALSE(f.ok()) << "cut at " << cut;
    EXPECT_NE(f.status().message().find("cut.gguf"), std::string::npos) << f.status().message();
  }
  // On disk, through the checkpoint reader.
  const std::string path = TempPath("short.gguf");
  WriteBytes(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + end - 100));
  auto ck = OpenGgufCheckpoint(path);
  ExpectError(ck.status(), {path, "runs past the end"});
}

// ---- synthetic files: header and metadata ----

TEST(GgufTest, SyntheticRoundTrip) {
  auto g = TinyLlama();
  g.Key("nested", GgufValueType::kArray).Put<uint32_t>(9).Put<uint64_t>(2);
  for (int i = 0; i < 2; ++i) g.kv.Put<uint32_t>(5).Put<uint64_t>(2).Put<int32_t>(-i).Put<int32_t>(i);
  g.Key("flag", GgufValueType::kBool).Put<uint8_t>(1);
  g.Key("big", GgufValueType::kU64).Put<uint64_t>(~0ull);
  g.Key("neg", GgufValueType::kI64).Put<int64_t>(-5);
  g.Key("dbl", GgufValueType::kF64).Put<double>(0.1);
  g.version = 2;
  auto b = g.Build();
  auto f = Parse(b);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->metadata()["nested"], json::parse("[[0,0],[-1,1]]"));
  EXPECT_EQ(f->metadata()["flag"], true);
  EXPECT_EQ(f->metadata()["big"].get<uint64_t>(), ~0ull);
  EXPECT_EQ(f->metadata()["neg"], -5);
  EXPECT_EQ(f->metadata()["dbl"].get<double>(), 0.1);
  EXPECT_EQ(f->metadata()["llama.attention.layer_norm_rms_epsilon"].get<double>(), 1e-6);
  EXPECT_EQ(f->tensors().size(), 11u);
  for (const auto& t : f->tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
}

TEST(GgufTest, InvalidUtf8StringsAreReplaced) {
  GgufBuilder g;
  g.Str("bad", std::string("a\xff\xc3(b\xed\xa0\x80z", 9));
  g.StrArray("toks", {"ok", std::string("\xc0\xaf", 2), "\xe2\x82\xac"});
  auto b = g.Build();
  auto f = Parse(b);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->metadata()["bad"], "a\xEF\xBF\xBD\xEF\xBF\xBD(b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");
  EXPECT_EQ(f->metadata()["toks"][2], "\xe2\x82\xac");  // valid UTF-8 kept byte for byte
  EXPECT_NO_THROW((void)f->metadata().dump());
}

TEST(GgufTest, BadMagicAndVersion) {
  auto g = TinyLlama();
  g.magic = 0x12345678;
  ExpectError(Parse(g.Build()).status(), {"t.gguf", "magic"});
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    g = TinyLlama();
    g.version = v;
    auto f = Parse(g.Build());
    ExpectError(f.status(), {"t.gguf", "version " + std::to_string(v)});
    EXPECT_EQ(f.status().code(), ErrorCode::kUnsupported);
  }
}

TEST(GgufTest, AbsurdCounts) {
  auto g = TinyLlama();
  g.tensor_count = 1ull << 40;
  ExpectError(Parse(g.Build()).status(), {"tensor_count"});
  g = TinyLlama();
  g.kv_count = ~0ull;
  ExpectError(Parse(g.Build()).status(), {"metadata_kv_count"});
  g = TinyLlama();
  g.kv_count = g.n_kv + 1;  // one more pair than present: reads into the tensor infos
  EXPECT_FALSE(Parse(g.Build()).ok());
  g = TinyLlama();
  g.tensor_count = g.tensors.size() + 1;
  EXPECT_FALSE(Parse(g.Build()).ok());
}

TEST(GgufTest, StringAndArrayLengthsPastEnd) {
  GgufBuilder g;
  g.Key("s", GgufValueType::kString).Put<uint64_t>(1ull << 50);
  ExpectError(Parse(g.Build()).status(), {"metadata key 's'", "string length"});
  g = GgufBuilder();
  g.Key("arr", GgufValueType::kArray).Put<uint32_t>(4).Put<uint64_t>(1ull << 61);
  ExpectError(Parse(g.Build()).status(), {"metadata key 'arr'", "array of"});
  g = GgufBuilder();
  g.Key("arr", GgufValueType::kArray).Put<uint32_t>(8).Put<uint64_t>(3);
  g.kv.Str("x").Str("y").Put<uint64_t>(1000);  // third string's length runs past the end
  ExpectError(Parse(g.Build()).status(), {"metadata key 'arr'", "element 2"});
  g = GgufBuilder();
  g.Key("arr", GgufValueType::kArray).Put<uint32_t>(77).Put<uint64_t>(1);
  ExpectError(Parse(g.Build()).status(), {"'arr'", "element type 77"});
  g = GgufBuilder();
  g.Key("v", static_cast<GgufValueType>(13)).Put<uint32_t>(0);
  ExpectError(Parse(g.Build()).status(), {"'v'", "value type 13"});
  g = GgufBuilder();
  g.Key("b", GgufValueType::kBool).Put<uint8_t>(2);
  ExpectError(Parse(g.Build()).status(), {"'b'", "bool"});
  // Arrays nested too deep.
  g = GgufBuilder();
  Bytes& kv = g.Key("deep", GgufValueType::kArray);
  for (int i = 0; i < 20; ++i) kv.Put<uint32_t>(9).Put<uint64_t>(1);
  kv.Put<uint32_t>(0).Put<uint64_t>(0);
  ExpectError(Parse(g.Build()).status(), {"'deep'", "nested"});
}

TEST(GgufTest, DuplicateKeysAndTensors) {
  auto g = TinyLlama();
  g.U32("llama.block_count", 2);
  ExpectError(Parse(g.Build()).status(), {"duplicate metadata key 'llama.block_count'"});
  g = TinyLlama();
  g.Tensor("blk.0.ffn_norm.weight", 0, {8}, F32Bytes(8, 0.f));
  ExpectError(Parse(g.Build()).status(), {"duplicate tensor name 'blk.0.ffn_norm.weight'"});
}

TEST(GgufTest, Alignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    auto g = TinyLlama();
    g.U32("general.alignment", a);
    ExpectError(Parse(g.Build()).status(), {"general.alignment"});
  }
  auto g = TinyLlama();
  g.alignment = 64;
  g.U32("general.alignment", 64);
  auto b = g.Build();
  auto f = Parse(b);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ((f->data() - b.data()) % 64, 0);
  g = TinyLlama();
  g.Str("general.alignment", "32");
  ExpectError(Parse(g.Build()).status(), {"general.alignment"});
}

// ---- synthetic files: tensor infos ----

TEST(GgufTest, TensorOffsetsValidated) {
  auto g = TinyLlama();
  g.tensors[2].offset = 40;  // not a multiple of 32
  ExpectError(Parse(g.Build()).status(), {"tensor 'blk.0.attn_q.weight'", "alignment"});

  for (uint64_t off : {1ull << 40, 4096ull, ~0ull - 31}) {
    g = TinyLlama();
    g.tensors.back().offset = off;  // past the end of the data section
    g.tensors.back().write = false;
    ExpectError(Parse(g.Build()).status(), {"tensor 'blk.0.ffn_norm.weight'", "runs past the end"});
  }
}

TEST(GgufTest, OverlappingTensors) {
  auto g = TinyLlama();
  g.tensors[3].offset = 0;  // attn_k on top of token_embd
  ExpectError(Parse(g.Build()).status(), {"overlap", "token_embd.weight"});
}

TEST(GgufTest, BadTensorTypesAndDims) {
  auto g = TinyLlama();
  g.tensors[0].type = 200;
  auto f = Parse(g.Build());
  ExpectError(f.status(), {"token_embd.weight", "unknown ggml type 200"});
  EXPECT_EQ(f.status().code(), ErrorCode::kUnsupported);
  g = TinyLlama();
  g.tensors[0].dims = {8, 10, 1, 1, 1};
  ExpectError(Parse(g.Build()).status(), {"token_embd.weight", "5 dims"});
  g = TinyLlama();
  g.tensors[0].dims = {1ull << 40, 1ull << 40};
  ExpectError(Parse(g.Build()).status(), {"token_embd.weight", "overflow"});
  g = TinyLlama();
  g.tensors[0].dims = {1ull << 63, 1};
  ExpectError(Parse(g.Build()).status(), {"token_embd.weight", "absurd"});
  g = TinyLlama();
  g.tensors[0].type = 2;  // Q4_0 needs ne[0] % 32 == 0
  ExpectError(Parse(g.Build()).status(), {"token_embd.weight", "block size 32"});
  g = TinyLlama();
  g.tensors[0].name = std::string(1ull << 12, 'x');
  g.tensors[0].dims = {8, 1ull << 50};  // size far past the end
  ExpectError(Parse(g.Build()).status(), {"runs past the end"});
}

// ---- OpenGgufCheckpoint on synthetic models ----

Expected<Checkpoint> OpenBuilt(const GgufBuilder& g, const std::string& name) {
  const std::string path = TempPath(name);
  WriteBytes(path, g.Build());
  return OpenGgufCheckpoint(path);
}

TEST(GgufCheckpointTest, TinyF16ModelNamesShapesAndPermutation) {
  auto g = TinyLlama(/*F16*/ 1);
  auto ck = OpenBuilt(g, "tiny_f16.gguf");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  const auto& c = ck->config;
  EXPECT_EQ(c["hidden_size"], 8);
  EXPECT_EQ(c["num_attention_heads"], 2);
  EXPECT_EQ(c["num_key_value_heads"], 1);
  EXPECT_EQ(c["head_dim"], 4);
  EXPECT_EQ(c["intermediate_size"], 12);
  EXPECT_EQ(c["vocab_size"], 10);
  EXPECT_EQ(c["max_position_embeddings"], 64);
  EXPECT_EQ(c["rope_theta"].get<double>(), 500000.0);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-6);
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["bos_token_id"], 7);
  EXPECT_EQ(c["eos_token_id"], 8);
  EXPECT_EQ(c["torch_dtype"], "float16");
  EXPECT_EQ(ck->Find("lm_head.weight"), nullptr);
  EXPECT_EQ(ck->tensors.size(), 11u);
  const SourceTensor* gate = ck->Find("model.layers.0.mlp.gate_proj.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->dtype, DType::kF16);
  EXPECT_EQ(gate->shape, (std::vector<int64_t>{12, 8}));  // GGUF ne = [8, 12]
  EXPECT_EQ(ck->Find("model.layers.0.mlp.down_proj.weight")->shape, (std::vector<int64_t>{8, 12}));
  // q rows: per head of 4 rows, HF [r0 r2 r1 r3] of the GGUF rows; rows are 8 f16 values.
  const SourceTensor* q = ck->Find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{8, 8}));
  const auto src = F16Bytes(64, 3.f);
  const int perm[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(std::memcmp(q->data + r * 16, src.data() + perm[r] * 16, 16), 0) << "q row " << r;
  const SourceTensor* k = ck->Find("model.layers.0.self_attn.k_proj.weight");
  const auto ksrc = F16Bytes(32, 4.f);
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(std::memcmp(k->data + r * 16, ksrc.data() + perm[r] * 16, 16), 0) << "k row " << r;
  EXPECT_EQ(ck->gguf_metadata["tokenizer.ggml.tokens"].size(), 10u);
}

// A q/k tensor with a zero dimension has no rows to un-permute: an error naming it (found by
// fuzz_gguf: the un-permutation copied into an empty buffer).
TEST(GgufCheckpointTest, EmptyRotaryTensorIsAnError) {
  auto ck = OpenBuilt(TinyLlama(1, false, /*q_in=*/0), "tiny_empty_q.gguf");
  ASSERT_FALSE(ck.ok());
  EXPECT_NE(ck.status().message().find("blk.0.attn_q.weight"), std::string::npos) << ck.status().message();
  EXPECT_NE(ck.status().message().find("empty"), std::string::npos) << ck.status().message();
}

TEST(GgufCheckpointTest, ExplicitOutputIsUntied) {
  auto ck = OpenBuilt(TinyLlama(0, /*with_output=*/true), "tiny_out.gguf");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->config["tie_word_embeddings"], false);
  ASSERT_NE(ck->Find("lm_head.weight"), nullptr);
  EXPECT_EQ(ck->Find("lm_head.weight")->shape, (std::vector<int64_t>{10, 8}));
}

TEST(GgufCheckpointTest, QuantizedTensorUnsupported) {
  auto g = TinyLlama(0);
  g.tensors[2].type = 8;  // Q8_0 (the bytes are nonsense; the type check comes first)
  g.tensors[2].dims = {32, 8};
  g.tensors[2].data.resize(8 * 34);
  auto ck = OpenBuilt(g, "q8.gguf");
  ExpectError(ck.status(), {"blk.0.attn_q.weight", "Q8_0"});
  EXPECT_EQ(ck.status().code(), ErrorCode::kUnsupported);
}

TEST(GgufCheckpointTest, MissingTensorAndKey) {
  auto g = TinyLlama(0);
  g.tensors.erase(g.tensors.begin() + 9);  // ffn_down
  auto ck = OpenBuilt(g, "missing.gguf");
  ExpectError(ck.status(), {"missing.gguf", "blk.0.ffn_down.weight", "missing"});
  EXPECT_EQ(ck.status().code(), ErrorCode::kNotFound);

  GgufBuilder h;
  h.Str("general.architecture", "llama");
  h.U32("llama.block_count", 1);
  ExpectError(OpenBuilt(h, "nokey.gguf").status(), {"llama.embedding_length"});
}

TEST(GgufCheckpointTest, WrongShapesAndUnknowns) {
  auto g = TinyLlama(0);
  g.tensors[3].dims = {8, 8};  // k with 2 heads' rows but head_count_kv = 1
  g.tensors[3].data = F32Bytes(64, 0.f);
  ExpectError(OpenBuilt(g, "kshape.gguf").status(), {"blk.0.attn_k.weight", "rows"});
  g = TinyLlama(0);
  g.tensors[7].dims = {8, 9};
  g.tensors[7].data = F32Bytes(72, 0.f);
  ExpectError(OpenBuilt(g, "gshape.gguf").status(), {"blk.0.ffn_gate.weight", "[12, 8]"});
  g = TinyLlama(0);
  g.Tensor("blk.3.attn_q.weight", 0, {8, 8}, F32Bytes(64, 0.f));
  ExpectError(OpenBuilt(g, "blk3.gguf").status(), {"blk.3.attn_q.weight", "block_count"});
  g = TinyLlama(0);
  g.Tensor("mystery.weight", 0, {8}, F32Bytes(8, 0.f));
  ExpectError(OpenBuilt(g, "mystery.gguf").status(), {"mystery.weight"});
  g = TinyLlama(0);
  g.Str("general.architecture", "qwen2");  // a duplicate key is caught first by the parser
  EXPECT_FALSE(OpenBuilt(g, "dup.gguf").ok());
  GgufBuilder h;
  h.Str("general.architecture", "gpt2");
  ExpectError(OpenBuilt(h, "gpt2.gguf").status(), {"gpt2", "llama"});
  g = TinyLlama(0);
  g.U32("llama.attention.key_length", 6);
  EXPECT_FALSE(OpenBuilt(g, "keylen.gguf").ok());
}

}  // namespace
}  // namespace kiln
