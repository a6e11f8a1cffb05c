// Chat templates of real models rendered like transformers 5.17's apply_chat_template
// (add_generation_prompt=True, strftime_now pinned to the goldens' date, 25 Nov 2026).
#include <gtest/gtest.h>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace kiln {
namespace {

using namespace kiln::testing_tok;

constexpr std::time_t kGoldenDate = 1795608000;  // 2026-11-25 12:00:00 UTC

class ChatTemplateGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGolden, RendersTextAndIds) {
  const std::string gp = SharedPath("fixtures/tokenizer-golden.json");
  const std::string dir = SharedPath("tokenizers/" + GetParam());
  if (!Exists(gp) || !Exists(dir)) GTEST_SKIP() << "fixture missing: " << gp << " or " << dir;
  const nlohmann::json g = ReadJson(gp)["tokenizers"][GetParam()];
  ASSERT_TRUE(g.is_object());
  auto ct = ChatTemplate::Load(dir);
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  // Only folders with real tokenizer files have meaningful chat ids.
  std::unique_ptr<Tokenizer> tok;
  if (Exists(dir + "/tokenizer.json") || Exists(dir + "/tokenizer.model")) {
    auto t = LoadTokenizer(dir);
    ASSERT_TRUE(t.ok()) << t.status().message();
    tok = std::move(*t);
  }
  ChatTemplateOptions opt;
  opt.now = kGoldenDate;
  int checked = 0;
  for (const auto& chat : g["chats"]) {
    opt.add_generation_prompt = chat.value("add_generation_prompt", true);
    auto text = ct->Render(chat["messages"], opt);
    if (chat.contains("error")) {
      ASSERT_FALSE(text.ok()) << "expected " << chat["error"];
      std::string want = chat["error"].get<std::string>();
      std::string inner = want.substr(want.find('\'') + 1);
      inner = inner.substr(0, inner.rfind('\''));
      EXPECT_NE(text.status().message().find(inner), std::string::npos) << text.status().message();
      ++checked;
      continue;
    }
    ASSERT_TRUE(text.ok()) << text.status().message();
    EXPECT_EQ(*text, chat["text"].get<std::string>()) << GetParam();
    if (tok)
      EXPECT_EQ(Ids(tok->Encode(*text, false)), Ids(chat["ids"].get<std::vector<int32_t>>())) << GetParam();
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(g["chats"].size()));
}

INSTANTIATE_TEST_SUITE_P(All, ChatTemplateGolden,
                         ::testing::Values("deepseek-r1-distill", "gemma", "llama2", "llama3",
                                           "mistral-instruct-v0.3", "phi3", "qwen2.5"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// Every chat template shipped in ../shared/tokenizers renders (with a system turn where the
// template allows one, and with tools for the tool-calling ones).
TEST(ChatTemplateAll, EveryTemplateInSharedRenders) {
  const std::string root = SharedPath("tokenizers");
  if (!Exists(root)) GTEST_SKIP() << "fixture missing: " << root;
  const nlohmann::json simple = nlohmann::json::parse(
      R"([{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"}])");
  int rendered = 0;
  for (const auto& dir : std::filesystem::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
      const std::string name = f.path().filename().string();
      bool is_tmpl = name.find("tokenizer_config") == 0 || name.find("chat_template") != std::string::npos;
      if (!is_tmpl) continue;
      auto j = nlohmann::json::parse(ReadAll(f.path().string()), nullptr, false);
      if (f.path().extension() == ".json" && (j.is_discarded() || !j.contains("chat_template"))) continue;
      auto ct = ChatTemplate::Load(f.path().string());
      ASSERT_TRUE(ct.ok()) << f.path() << ": " << ct.status().message();
      ChatTemplateOptions opt;
      opt.now = kGoldenDate;
      auto text = ct->Render(simple, opt);
      ASSERT_TRUE(text.ok()) << f.path() << ": " << text.status().message();
      EXPECT_NE(text->find("Bye"), std::string::npos) << f.path();
      ++rendered;
    }
  }
  EXPECT_GE(rendered, 12);
}

TEST(ChatTemplateAll, ToolCallingTemplates) {
  const std::string dir = SharedPath("tokenizers/qwen2.5");
  if (!Exists(dir)) GTEST_SKIP() << "fixture missing: " << dir;
  auto ct = ChatTemplate::Load(dir);
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  ChatTemplateOptions opt;
  opt.extra["tools"] = nlohmann::ordered_json::parse(
      R"([{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  auto msgs = nlohmann::ordered_json::parse(R"([{"role":"user","content":"Weather in Paris?"},
    {"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
    {"role":"tool","content":"sunny"}])");
  auto text = ct->Render(msgs, opt);
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_NE(text->find(R"({"type": "function", "function": {"name": "get_weather")"), std::string::npos)
      << *text;
  EXPECT_NE(text->find(R"(<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>)"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("<tool_response>\nsunny\n</tool_response>"), std::string::npos) << *text;
}

}  // namespace
}  // namespace kiln
