// Tokenizers against references made by other code: llama2.c run.c, HF transformers 5.17 /
// tokenizers, tiktoken, sentencepiece, llama.cpp test vectors.
#include <gtest/gtest.h>

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace kiln {
namespace {

using namespace kiln::testing_tok;

#define LOAD_OR_SKIP(var, path)                                                \
  if (!Exists(path)) GTEST_SKIP() << "fixture missing: " << (path);            \
  auto var##_or = LoadTokenizer(path);                                         \
  ASSERT_TRUE(var##_or.ok()) << (path) << ": " << var##_or.status().message(); \
  const Tokenizer& var = **var##_or

TEST(TokenizerLlama2c, OnceUponATime) {
  const std::string p = SharedPath("models/stories260K/tok512.bin");
  LOAD_OR_SKIP(tok, p);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(Ids(tok.Encode("Once upon a time", true)), "[1 403 407 261 378]");
  EXPECT_EQ(Ids(tok.Encode("Once upon a time", false)), "[403 407 261 378]");
  EXPECT_TRUE(tok.Encode("", false).empty());
}

TEST(TokenizerLlama2c, ReferenceSequencesDecode) {
  for (const char* name : {"greedy_n256", "greedy_once_upon_a_time_n256"}) {
    const std::string tp = SharedPath(std::string("models/stories260K/reference_tokens_") + name + ".txt");
    const std::string xp = SharedPath(std::string("models/stories260K/reference_") + name + ".txt");
    if (!Exists(tp) || !Exists(xp)) GTEST_SKIP() << "fixture missing: " << tp;
    LOAD_OR_SKIP(tok, SharedPath("models/stories260K/tok512.bin"));
    std::string ref = ReadAll(tp);
    std::vector<int32_t> seq;
    std::istringstream is(ref.substr(ref.find("sequence:") + 9));
    for (int32_t id; is >> id;) seq.push_back(id);
    ASSERT_GT(seq.size(), 5u);
    std::string text = tok.Decode(seq, /*skip_special=*/true);
    std::string want = ReadAll(xp);
    // run.c prints the generated pieces; compare the common part.
    size_t n = std::min(text.size(), want.size());
    EXPECT_GT(n, 100u);
    EXPECT_EQ(text.substr(0, n), want.substr(0, n)) << name;
    // Re-encoding the prompt part gives the prompt tokens back.
    std::string prompt_line = ref.substr(0, ref.find('\n'));
    if (std::string(name).find("once") != std::string::npos)
      EXPECT_EQ(Ids(tok.Encode("Once upon a time", true)), "[1 403 407 261 378]");
  }
}

TEST(TokenizerSentencePiece, Tok512ModelMatchesBin) {
  const std::string mp = SharedPath("models/stories260K/tok512.model");
  LOAD_OR_SKIP(spm, mp);
  LOAD_OR_SKIP(bin, SharedPath("models/stories260K/tok512.bin"));
  // (tok512.model also collapses runs of spaces, which run.c does not: texts avoid them.)
  for (const char* text : {"Once upon a time", "Lily and Tom went to the park. They saw a big dog!", "x",
                           "Ünïcödé 中文 👍", "a\nb\n\nc"}) {
    EXPECT_EQ(Ids(spm.Encode(text, true)), Ids(bin.Encode(text, true))) << text;
    EXPECT_EQ(spm.Decode(spm.Encode(text, true), true), bin.Decode(bin.Encode(text, true), true)) << text;
  }
  EXPECT_EQ(Ids(spm.Encode("Once upon a time", true)), "[1 403 407 261 378]");
}

// ---- HF goldens (transformers 5.17) ----
class TokenizerHfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerHfGolden, EncodeDecode) {
  const std::string gp = SharedPath("fixtures/tokenizer-golden.json");
  const std::string dir = SharedPath("tokenizers/" + GetParam());
  if (!Exists(gp)) GTEST_SKIP() << "fixture missing: " << gp;
  LOAD_OR_SKIP(tok, dir);
  const nlohmann::json g = ReadJson(gp)["tokenizers"][GetParam()];
  ASSERT_TRUE(g.is_object()) << GetParam() << " not in " << gp;
  EXPECT_EQ(tok.vocab_size(), g["vocab_size"].get<int>());
  int n = 0;
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    auto ids = tok.Encode(text, false);
    EXPECT_EQ(Ids(ids), Ids(c["ids"].get<std::vector<int32_t>>())) << GetParam() << " text: " << text;
    EXPECT_EQ(Ids(tok.Encode(text, true)), Ids(c["ids_with_specials"].get<std::vector<int32_t>>()))
        << GetParam() << " text: " << text;
    EXPECT_EQ(tok.Decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>())
        << GetParam() << " text: " << text;
    ++n;
  }
  EXPECT_EQ(n, 22);
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerHfGolden,
                         ::testing::Values("gpt2", "llama2", "llama3", "mistral-instruct-v0.3", "phi3",
                                           "qwen2.5"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// ---- tokenizer-golden-extra.json: tiktoken, sentencepiece, tokenizers (file semantics) ----
struct ExtraCase {
  const char* name;
  const char* file;
};
class TokenizerExtraGolden : public ::testing::TestWithParam<ExtraCase> {};

TEST_P(TokenizerExtraGolden, EncodeDecode) {
  const std::string gp = SharedPath("fixtures/tokenizer-golden-extra.json");
  if (!Exists(gp)) GTEST_SKIP() << "fixture missing: " << gp;
  LOAD_OR_SKIP(tok, SharedPath(GetParam().file));
  const nlohmann::json g = ReadJson(gp)[GetParam().name];
  ASSERT_TRUE(g.is_object());
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    auto want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(Ids(tok.Encode(text, false)), Ids(want)) << GetParam().name << " text: " << text;
    if (c.contains("decoded"))
      EXPECT_EQ(tok.Decode(want), c["decoded"].get<std::string>()) << GetParam().name << " text: " << text;
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerExtraGolden,
                         ::testing::Values(ExtraCase{"tiktoken-cl100k",
                                                     "tokenizers/tiktoken-cl100k/cl100k_base.tiktoken"},
                                           ExtraCase{"baichuan2", "tokenizers/baichuan2/tokenizer.model"},
                                           ExtraCase{"chatglm3", "tokenizers/chatglm3/tokenizer.json"}),
                         [](const auto& info) {
                           std::string s = info.param.name;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// ---- llama.cpp test vectors (HF tokenizers, add_special_tokens=False) ----
struct VectorCase {
  const char* name;
  const char* tokenizer;  // file: the library's own semantics
  const char* vectors;    // prefix of .inp/.out
};
class TokenizerLlamaCppVectors : public ::testing::TestWithParam<VectorCase> {};

TEST_P(TokenizerLlamaCppVectors, Encode) {
  const std::string inp = SharedPath(std::string(GetParam().vectors) + ".inp");
  const std::string out = SharedPath(std::string(GetParam().vectors) + ".out");
  if (!Exists(inp) || !Exists(out)) GTEST_SKIP() << "fixture missing: " << inp;
  LOAD_OR_SKIP(tok, SharedPath(GetParam().tokenizer));
  auto vecs = ReadVectors(inp, out);
  ASSERT_GE(vecs.size(), 40u);
  int bad = 0;
  for (const auto& v : vecs) {
    std::string got = Ids(tok.Encode(v.text, false));
    if (got != Ids(v.ids)) ++bad;
    EXPECT_EQ(got, Ids(v.ids)) << GetParam().name << " text: '" << v.text << "'";
  }
  EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(
    All, TokenizerLlamaCppVectors,
    ::testing::Values(
        VectorCase{"gpt2_json", "tokenizers/gpt2/tokenizer.json", "tokenizers/gpt2/test-vectors"},
        VectorCase{"gpt2_vocab_merges", "tokenizers/gpt2/vocab.json", "tokenizers/gpt2/test-vectors"},
        VectorCase{"llama2_json", "tokenizers/llama2/tokenizer.json", "tokenizers/llama2/test-vectors"},
        VectorCase{"llama3_tiktoken", "tokenizers/llama3/tokenizer.model", "tokenizers/llama3/test-vectors"},
        VectorCase{"llama3_json", "tokenizers/llama3/tokenizer.json", "tokenizers/llama3/test-vectors"},
        VectorCase{"phi3_json", "tokenizers/phi3/tokenizer.json", "tokenizers/phi3/test-vectors"},
        VectorCase{"qwen2_json", "tokenizers/qwen2.5/tokenizer.json", "tokenizers/qwen2.5/test-vectors"},
        VectorCase{"gguf_llama_spm", "models/ggml-vocab/ggml-vocab-llama-spm.gguf",
                   "models/ggml-vocab/ggml-vocab-llama-spm.gguf"},
        VectorCase{"gguf_gpt2", "models/ggml-vocab/ggml-vocab-gpt-2.gguf",
                   "models/ggml-vocab/ggml-vocab-gpt-2.gguf"}),
    [](const auto& info) { return std::string(info.param.name); });

// stories260K.gguf carries the same vocabulary as tok512.bin.
TEST(TokenizerGguf, Stories260KMatchesTokenizerBin) {
  const std::string gp = SharedPath("models/stories260K/stories260K.gguf");
  if (!Exists(gp)) GTEST_SKIP() << "fixture missing: " << gp;
  auto md = ReadGgufMetadata(gp);
  ASSERT_TRUE(md.ok()) << md.status().message();
  auto g = LoadGgufTokenizer(*md);
  ASSERT_TRUE(g.ok()) << g.status().message();
  LOAD_OR_SKIP(bin, SharedPath("models/stories260K/tok512.bin"));
  for (const char* text :
       {"Once upon a time", "Lily and Tom went to the park.", "  two  spaces", "Ünïcödé 中文"}) {
    EXPECT_EQ(Ids((*g)->Encode(text, true)), Ids(bin.Encode(text, true))) << text;
    EXPECT_EQ((*g)->Decode((*g)->Encode(text, true), true), text) << text;
  }
}

}  // namespace
}  // namespace kiln
