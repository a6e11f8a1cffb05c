// Tokenizer robustness: streaming == full decode, random bytes / ids never crash, bad files are
// rejected with messages, engine-dir round trips; and the Jinja interpreter's rules and limits.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "../golden/tokenizer_test_util.h"
#include "format/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer.h"

namespace kiln {
namespace {

using namespace kiln::testing_tok;

const char* const kTokenizerPaths[] = {"models/stories260K/tok512.bin",
                                       "models/stories260K/tok512.model",
                                       "tokenizers/gpt2",
                                       "tokenizers/llama2",
                                       "tokenizers/llama3",
                                       "tokenizers/mistral-instruct-v0.3",
                                       "tokenizers/phi3",
                                       "tokenizers/qwen2.5",
                                       "tokenizers/tiktoken-cl100k/cl100k_base.tiktoken",
                                       "tokenizers/chatglm3/tokenizer.json",
                                       "tokenizers/baichuan2/tokenizer.model"};

std::string TempDir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("kiln_tok_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

std::vector<std::string> Texts() {
  return {"Hello world",
          " Hello  world ",
          "Once upon a time, there was a little girl named Lily.",
          "TensorRT-LLM 在性能上提升2~3倍左右。",
          "emoji 👍🏽 🤖🚀 and ZWJ 👨‍👩‍👧‍👦",
          "naïve café résumé Ωmega ß",
          "\xC2\xA0non-breaking\xE2\x80\x89thin space",
          "<s> literal specials </s> <|endoftext|>",
          "def f(x):\n    return x**2  # square\n\n\n",
          "   leading and trailing   "};
}

class TokenizerStreaming : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerStreaming, ConcatenationEqualsFullDecodeAndNoSplitChars) {
  const std::string path = SharedPath(GetParam());
  if (!Exists(path)) GTEST_SKIP() << "fixture missing: " << path;
  auto t = LoadTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  const Tokenizer& tok = **t;
  for (bool skip : {false, true}) {
    for (const std::string& text : Texts()) {
      auto ids = tok.Encode(text, true);
      IncrementalDetokenizer d(tok, skip);
      std::string streamed;
      for (int32_t id : ids) {
        std::string piece = d.Push(id);
        EXPECT_TRUE(tok::IsValidUtf8(piece)) << GetParam() << " chunk of '" << text << "'";
        streamed += piece;
      }
      streamed += d.Flush();
      EXPECT_EQ(streamed, tok.Decode(ids, skip)) << GetParam() << " text '" << text << "' skip=" << skip;
    }
  }
  // With a prompt: the continuation streams as the full decode's tail.
  auto prompt = tok.Encode("Once upon a time", true);
  auto cont = tok.Encode(" there was a café 中文 👍", false);
  IncrementalDetokenizer d(tok);
  d.SetPrompt(prompt);
  std::string streamed;
  for (int32_t id : cont) streamed += d.Push(id);
  streamed += d.Flush();
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), cont.begin(), cont.end());
  std::string full = tok.Decode(all), head = tok.Decode(prompt);
  ASSERT_EQ(full.compare(0, head.size(), head), 0);
  EXPECT_EQ(streamed, full.substr(head.size())) << GetParam();
}

TEST_P(TokenizerStreaming, RandomBytesAndIdsNeverCrash) {
  const std::string path = SharedPath(GetParam());
  if (!Exists(path)) GTEST_SKIP() << "fixture missing: " << path;
  auto t = LoadTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status().message();
  const Tokenizer& tok = **t;
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 60; ++iter) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    if (iter % 3 == 0) bytes += "\xE4\xB8";  // truncated character at the end
    auto ids = tok.Encode(bytes, iter % 2 == 0);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size()) << GetParam();
    std::string back = tok.Decode(ids);
    EXPECT_TRUE(tok::IsValidUtf8(back));
    // Random ids, including out-of-range ones, decode and stream without crashing.
    std::vector<int32_t> rid(rng() % 40);
    for (int32_t& id : rid) id = static_cast<int32_t>(rng() % (tok.vocab_size() + 10)) - 5;
    std::string full = tok.Decode(rid);
    EXPECT_TRUE(tok::IsValidUtf8(full));
    IncrementalDetokenizer d(tok);
    std::string streamed;
    for (int32_t id : rid) streamed += d.Push(id);
    streamed += d.Flush();
    EXPECT_EQ(streamed, full) << GetParam() << " iteration " << iter;
    for (int32_t id : rid) (void)tok.TokenBytes(-1, id), (void)tok.piece(id), (void)tok.is_special(id);
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerStreaming, ::testing::ValuesIn(kTokenizerPaths), [](const auto& info) {
  std::string s = info.param;
  for (char& ch : s)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
});

// A long run of byte tokens that never forms UTF-8 streams in bounded windows and still
// concatenates to the full decode (one U+FFFD per invalid byte token, as HF).
TEST(TokenizerStreamingBytes, LongInvalidByteRun) {
  const std::string dir = SharedPath("tokenizers/llama2");
  if (!Exists(dir)) GTEST_SKIP() << "fixture missing: " << dir;
  auto t = LoadTokenizer(dir);
  ASSERT_TRUE(t.ok()) << t.status().message();
  std::vector<int32_t> ids(3000, 3 + 0x80);                   // <0x80>: a lone continuation byte
  ids.push_back(29871);                                       // "▁" ends the byte run
  for (int32_t b : {0xE4, 0xB8, 0xAD}) ids.push_back(3 + b);  // then a valid 中
  IncrementalDetokenizer d(**t);
  std::string streamed;
  for (int32_t id : ids) streamed += d.Push(id);
  streamed += d.Flush();
  EXPECT_EQ(streamed, (*t)->Decode(ids));
  EXPECT_EQ(streamed.substr(streamed.size() - 3), "中");
}

TEST(TokenizerErrors, BadInputsAreRejectedWithMessages) {
  auto missing = LoadTokenizer("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent"), std::string::npos);

  const std::string dir = TempDir("bad");
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(dir + "/" + name, std::ios::binary) << data;
    return dir + "/" + name;
  };
  auto r = LoadTokenizer(write("garbage.json", "{not json"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("garbage.json"), std::string::npos) << r.status().message();
  r = LoadTokenizer(write("nomodel.json", R"({"added_tokens": []})"));
  ASSERT_FALSE(r.ok());
  r = LoadTokenizer(write("wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {}}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("WordPiece"), std::string::npos);
  r = LoadTokenizer(
      write("badmerge.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}})"));
  ASSERT_FALSE(r.ok());
  r = LoadTokenizer(write("badregex.json",
                          R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                              "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("regex"), std::string::npos) << r.status().message();
  // Ids that are not token ids (found by tests/fuzz/fuzz_tokenizer.cpp): a post-processor id that is
  // a string, one outside the vocabulary (a model would index its embedding with it), an added
  // token id far past the vocabulary.
  const std::string bpe = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})";
  const std::string tp = R"("post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}},
      {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"id": "<s>", "ids": )";
  r = LoadTokenizer(write("strid.json", "{" + bpe + "," + tp + R"(["x"]}}}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'<s>' has the id"), std::string::npos) << r.status().message();
  r = LoadTokenizer(write("farid.json", "{" + bpe + "," + tp + R"([64790]}}}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("64790, outside the vocabulary of 2"), std::string::npos) << r.status().message();
  r = LoadTokenizer(
      write("farid_ok.json", "{" + bpe + "," + tp + R"([5]}}}, "added_tokens": [{"id": 5, "content": "<s>"}]})"));
  EXPECT_TRUE(r.ok()) << r.status().message();
  r = LoadTokenizer(
      write("hugeadded.json", "{" + bpe + R"(, "added_tokens": [{"id": 2147483646, "content": "<x>"}]})"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("out of range"), std::string::npos) << r.status().message();
  r = LoadTokenizer(write("short.bin", std::string("\x07\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00", 12)));
  ASSERT_FALSE(r.ok());
  r = LoadTokenizer(write("bad.tiktoken", "!!!! 0\n"));
  ASSERT_FALSE(r.ok());
  auto g = LoadGgufTokenizer(nlohmann::json::object());
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("tokenizer.ggml.model"), std::string::npos);
  g = LoadGgufTokenizer(nlohmann::json{{"tokenizer.ggml.model", "llama"},
                                       {"tokenizer.ggml.tokens", {"a", "b"}},
                                       {"tokenizer.ggml.scores", {0.0}}});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("scores"), std::string::npos);
  g = LoadGgufTokenizer(nlohmann::json{{"tokenizer.ggml.model", "t5"}, {"tokenizer.ggml.tokens", {"a"}}});
  ASSERT_FALSE(g.ok());
  std::filesystem::remove_all(dir);
}

TEST(TokenizerEngineDir, SaveAndLoadRoundTrip) {
  const std::string bin = SharedPath("models/stories260K/tok512.bin");
  const std::string gguf = SharedPath("models/stories260K/stories260K.gguf");
  const std::string hf = SharedPath("tokenizers/phi3");
  if (!Exists(bin) || !Exists(gguf) || !Exists(hf)) GTEST_SKIP() << "fixture missing: " << bin;
  for (const std::string& src : {bin, gguf, hf}) {
    const std::string dir = TempDir("engine");
    auto files = SaveTokenizerForEngine(src, dir);
    ASSERT_TRUE(files.ok()) << files.status().message();
    auto a = LoadTokenizer(dir);
    ASSERT_TRUE(a.ok()) << src << ": " << a.status().message();
    auto b = LoadTokenizer(src);
    ASSERT_TRUE(b.ok());
    for (const char* text : {"Once upon a time", "Lily, Ünïcödé 中文"})
      EXPECT_EQ(Ids((*a)->Encode(text, true)), Ids((*b)->Encode(text, true))) << src;
    EXPECT_EQ((*a)->eos_ids(), (*b)->eos_ids()) << src;
    std::filesystem::remove_all(dir);
  }
}

// Control pieces written in the text are tokens (HF slow-tokenizer behaviour), not characters.
TEST(TokenizerSentencePiece, ControlPiecesInText) {
  const std::string p = SharedPath("tokenizers/mistral-instruct-v0.3/tokenizer.model");
  if (!Exists(p)) GTEST_SKIP() << "fixture missing: " << p;
  auto t = LoadSentencePieceTokenizer(p, true, false, /*special_text=*/true);
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto ids = (*t)->Encode("<s>[INST] Hello[/INST]", false);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(ids.back(), 4);
  EXPECT_EQ((*t)->Decode(ids), "<s>[INST] Hello[/INST]");
  EXPECT_NE((*t)->Decode(ids, true).find("Hello"), std::string::npos);
  // libsentencepiece's own semantics (a lone .model file) spell control pieces out.
  auto plain = LoadTokenizer(p);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE((*plain)->Encode("<s>", false).front(), 1);
}

// A GGUF's tokenizer.chat_template travels with tokenizer.gguf.json into an engine dir.
TEST(ChatTemplateGguf, TemplateFromGgufMetadata) {
  const std::string gguf = SharedPath("models/stories260K/stories260K.gguf");
  if (!Exists(gguf)) GTEST_SKIP() << "fixture missing: " << gguf;
  auto md = ReadGgufMetadata(gguf);
  ASSERT_TRUE(md.ok()) << md.status().message();
  (*md)["tokenizer.chat_template"] =
      "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}";
  const std::string dir = TempDir("gguf_chat");
  ASSERT_TRUE(SaveGgufTokenizerJson(*md, dir).ok());
  auto ct = ChatTemplate::Load(dir);
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  auto text = ct->Render(nlohmann::json::parse(R"([{"role":"user","content":"Hi"}])"));
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_EQ(*text, "<s>Hi</s>");
  auto tok = LoadTokenizer(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(Ids((*tok)->Encode("Once upon a time", true)), "[1 403 407 261 378]");
  std::filesystem::remove_all(dir);
}

TEST(TokenizerSpecials, BosEosAndSpecialFlags) {
  const std::string l3 = SharedPath("tokenizers/llama3");
  if (!Exists(l3)) GTEST_SKIP() << "fixture missing: " << l3;
  auto t = LoadTokenizer(l3);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->bos_id(), 128000);
  auto eos = (*t)->eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 128009), eos.end());
  EXPECT_TRUE((*t)->is_special(128009));
  EXPECT_FALSE((*t)->is_special(9906));
  EXPECT_EQ((*t)->Decode(std::vector<int32_t>{128000, 9906, 128009}, true), "Hello");
  EXPECT_EQ((*t)->Decode(std::vector<int32_t>{128000, 9906, 128009}, false),
            "<|begin_of_text|>Hello<|eot_id|>");
}

// ---- Jinja interpreter ----
std::string RenderStr(const std::string& tmpl, const nlohmann::json& msgs = nlohmann::json::array(),
                      ChatTemplateOptions opt = {}) {
  auto ct = ChatTemplate::Create(tmpl, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  if (!ct.ok()) return "PARSE ERROR: " + ct.status().message();
  auto r = ct->Render(msgs, opt);
  return r.ok() ? *r : "ERROR: " + r.status().message();
}

TEST(ChatTemplateJinja, Basics) {
  EXPECT_EQ(RenderStr("{{ bos_token }}{% for m in messages %}[{{ loop.index }}:{{ m.role }}]{% endfor %}",
                      nlohmann::json::parse(R"([{"role":"user"},{"role":"assistant"}])")),
            "<s>[1:user][2:assistant]");
  EXPECT_EQ(RenderStr("{% if 1 > 2 %}a{% elif 'x' in 'xyz' %}b{% else %}c{% endif %}"), "b");
  EXPECT_EQ(
      RenderStr("{{ '  hi  ' | trim }}|{{ [1,2,3] | length }}|{{ 'a,b'.split(',') }}|{{ none }}|{{ true }}"),
      "hi|3|['a', 'b']|None|True");
  EXPECT_EQ(RenderStr("{{ {'a': [1, 'x', none]} | tojson }}|{{ {'a': 1} | tojson(indent=2) }}"),
            "{\"a\": [1, \"x\", null]}|{\n  \"a\": 1\n}");
  EXPECT_EQ(RenderStr("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% "
                      "endfor %}{{ ns.n }}"),
            "10");
  EXPECT_EQ(
      RenderStr("{% for x in [1,2,3,4] if x % 2 == 0 %}{{ x }}{% if loop.last %}!{% endif %}{% endfor %}"),
      "24!");
  EXPECT_EQ(RenderStr("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(RenderStr("{{ [1,2,3,4][1:] }}{{ 'hello'[::-1] }}{{ [1,2,3][-1] }}"), "[2, 3, 4]olleh3");
  EXPECT_EQ(RenderStr("{{ x is defined }}{{ x | default('d') }}{{ 'a' if false else 'b' }}"), "Falsedb");
  EXPECT_EQ(RenderStr("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "012");
  EXPECT_EQ(RenderStr("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                      "{{ greet('Bob') }}{{ greet('Al', punct='?') }}"),
            "Hi Bob!Hi Al?");
  EXPECT_EQ(RenderStr("{% set x %}a{{ 1 + 1 }}b{% endset %}[{{ x }}]"), "[a2b]");
  EXPECT_EQ(RenderStr("{{ '\\u2581x\\x41' }}|{{ '%s-%d' % ['a', 3] }}|{{ 'v=%s' % 'q' }}"),
            "\u2581xA|a-3|v=q");
  EXPECT_EQ(RenderStr("{{ strftime_now('%d %b %Y') }}", nlohmann::json::array(),
                      ChatTemplateOptions{.now = 1795608000}),
            "25 Nov 2026");
}

TEST(ChatTemplateJinja, Whitespace) {
  // trim_blocks + lstrip_blocks, as HF configures Jinja.
  EXPECT_EQ(RenderStr("{% if true %}\n    a\n{% endif %}\nb\n"), "    a\nb");
  EXPECT_EQ(RenderStr("x  {%- if true -%}  y  {%- endif -%}  z"), "xyz");
  EXPECT_EQ(RenderStr("a {# comment #}\nb"), "a b");
  EXPECT_EQ(RenderStr("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
}

TEST(ChatTemplateJinja, ErrorsAndLimits) {
  EXPECT_EQ(RenderStr("{{ raise_exception('Roles must alternate') }}"),
            "ERROR: chat template raised an exception: Roles must alternate");
  EXPECT_NE(RenderStr("{% for x in y %}").find("PARSE ERROR"), std::string::npos);
  EXPECT_NE(RenderStr("{{ 'a' | nosuchfilter }}").find("unknown filter 'nosuchfilter'"), std::string::npos);
  EXPECT_NE(RenderStr("{% call m() %}{% endcall %}").find("not supported"), std::string::npos);
  EXPECT_NE(RenderStr("{% macro r(n) %}{{ r(n) }}{% endmacro %}{{ r(1) }}").find("too deeply"),
            std::string::npos);
  EXPECT_NE(RenderStr("{{ 1 + 'a' }}").find("unsupported operand"), std::string::npos);
  std::string deep(5000, '(');
  EXPECT_NE(RenderStr("{{ " + deep + "1" + std::string(5000, ')') + " }}").find("too deeply"),
            std::string::npos);
  ChatTemplateOptions small;
  small.max_loop_iterations = 1000;
  EXPECT_NE(
      RenderStr("{% for i in range(100000) %}{% endfor %}", nlohmann::json::array(), small).find("range"),
      std::string::npos);
  small.max_output_bytes = 100;
  EXPECT_NE(RenderStr("{% for i in range(50) %}xxxxxxxxxx{% endfor %}", nlohmann::json::array(), small)
                .find("output"),
            std::string::npos);
  EXPECT_NE(RenderStr("{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}"
                      "{% endfor %}{{ ns.x | length }}")
                .find("too long"),
            std::string::npos);
  EXPECT_NE(RenderStr("{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}"
                      "{% endfor %}{{ ns.x | length }}")
                .find("too long"),
            std::string::npos);
  EXPECT_EQ(RenderStr("{{ 9223372036854775807 + 1 }}|{{ 10 ** 30 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 % -1 }}"),
            "9.223372036854776e+18|1e+30|-4|2|0");
  // Garbage templates never crash.
  std::mt19937 rng(7);
  const std::string alphabet = "{}%#-+|.()[]'\"abc ifendfor set=~!<>,:0123456789\n";
  for (int i = 0; i < 300; ++i) {
    std::string t(rng() % 60, ' ');
    for (char& c : t) c = alphabet[rng() % alphabet.size()];
    (void)RenderStr(t);
  }
}

}  // namespace
}  // namespace kiln
