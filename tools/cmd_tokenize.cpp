// kiln tokenize / detokenize / chat-template: the tokenizer module from the command line.
//   kiln tokenize --tokenizer PATH (--text TEXT | --file FILE) [--add-special] [--bench N]
//   kiln tokenize --tokenizer PATH --jsonl FILE   (one JSON string per line -> one id array per line)
//   kiln detokenize --tokenizer PATH --tokens 1,2,3 [--skip-special]
//   kiln detokenize --tokenizer PATH --jsonl FILE  (one id array per line -> one JSON string per line)
//   kiln chat-template --tokenizer PATH --messages FILE.json [--no-generation-prompt] [--ids]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kiln::cli {
namespace {

std::string ReadFileOrFail(const std::string& path, const std::string& flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(flag + ": cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string IdsJson(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

struct TokenizeArgs {
  std::string tokenizer, text, file, jsonl;
  bool add_special = false;
  int bench = 0;
};

// --bench N: encode the text N times on this thread and report the rate (bench/peers uses it).
// The text(s) to encode: --text, --file, or --jsonl (one JSON string per line).
std::vector<std::string> Inputs(const TokenizeArgs& a) {
  if (!a.text.empty() + !a.file.empty() + !a.jsonl.empty() > 1) Fail("give one of --text, --file, --jsonl");
  if (a.jsonl.empty()) return {a.file.empty() ? a.text : ReadFileOrFail(a.file, "--file")};
  std::vector<std::string> out;
  std::istringstream lines(ReadFileOrFail(a.jsonl, "--jsonl"));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_string()) Fail("--jsonl: line " + std::to_string(n) + " is not a JSON string");
    out.push_back(j.get<std::string>());
  }
  return out;
}

// --bench N: encode the input(s) N times on this thread and report the rate (bench/peers uses it).
void Tokenize(const TokenizeArgs& a) {
  auto tok = ValueOrFail(LoadTokenizer(a.tokenizer));
  const std::vector<std::string> texts = Inputs(a);
  if (a.bench > 0) {
    size_t n_tokens = 0, n_bytes = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.bench; ++i)
      for (const std::string& t : texts) {
        n_tokens += tok->Encode(t, a.add_special).size();
        n_bytes += t.size();
      }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json r = {{"bytes", n_bytes},
                        {"tokens", n_tokens},
                        {"seconds", s},
                        {"mb_per_s", n_bytes / s / 1e6},
                        {"tokens_per_s", n_tokens / s}};
    std::printf("%s\n", r.dump().c_str());
    return;
  }
  for (const std::string& t : texts) std::printf("%s\n", IdsJson(tok->Encode(t, a.add_special)).c_str());
}

void SetupTokenize(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand("tokenize", "Encode text to token ids (printed as a JSON array)");
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer folder, engine dir or file")->required();
  cmd->add_option("--text", args->text, "Text to encode");
  cmd->add_option("--file", args->file, "Encode the contents of this file");
  cmd->add_option("--jsonl", args->jsonl,
                  "Encode each line (a JSON string) of this file; one id array per line");
  cmd->add_flag("--add-special", args->add_special,
                "Add BOS/EOS/template tokens as the tokenizer config asks");
  cmd->add_option("--bench", args->bench, "Encode N times and print the throughput instead of ids");
  cmd->callback([args] { Tokenize(*args); });
}

struct DetokenizeArgs {
  std::string tokenizer, tokens, jsonl;
  bool skip_special = false;
};

void SetupDetokenize(CLI::App& app) {
  auto args = std::make_shared<DetokenizeArgs>();
  auto* cmd = app.add_subcommand("detokenize", "Decode token ids to text");
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer folder, engine dir or file")->required();
  cmd->add_option("--tokens", args->tokens, "Comma-separated token ids");
  cmd->add_option("--jsonl", args->jsonl,
                  "Decode each line (a JSON array of ids); print one JSON string per line");
  cmd->add_flag("--skip-special", args->skip_special, "Drop special tokens");
  cmd->callback([args] {
    auto tok = ValueOrFail(LoadTokenizer(args->tokenizer));
    if (!args->jsonl.empty()) {
      std::istringstream lines(ReadFileOrFail(args->jsonl, "--jsonl"));
      int n = 0;
      for (std::string line; std::getline(lines, line);) {
        ++n;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_array()) Fail("--jsonl: line " + std::to_string(n) + " is not a JSON array of ids");
        std::vector<int32_t> ids;
        for (const auto& x : j) {
          if (!x.is_number_integer()) Fail("--jsonl: line " + std::to_string(n) + " holds a non-integer id");
          ids.push_back(x.get<int32_t>());
        }
        std::printf("%s\n", nlohmann::json(tok->Decode(ids, args->skip_special)).dump().c_str());
      }
      return;
    }
    if (args->tokens.empty()) Fail("give --tokens or --jsonl");
    auto ids = ParseTokenList(args->tokens, "--tokens");
    for (int32_t id : ids)
      if (id >= tok->vocab_size())
        Fail("--tokens: id " + std::to_string(id) + " is outside the vocabulary (size " +
             std::to_string(tok->vocab_size()) + ")");
    std::string text = tok->Decode(ids, args->skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  });
}

struct ChatArgs {
  std::string tokenizer, messages, template_name;
  bool no_generation_prompt = false, ids = false;
};

void SetupChatTemplate(CLI::App& app) {
  auto args = std::make_shared<ChatArgs>();
  auto* cmd = app.add_subcommand("chat-template", "Render a chat with the tokenizer's chat template");
  cmd->add_option("--tokenizer", args->tokenizer, "Tokenizer folder, tokenizer_config.json or .jinja")
      ->required();
  cmd->add_option(
         "--messages", args->messages,
         "JSON file: [{\"role\":..., \"content\":...}, ...] or {\"messages\": [...], \"tools\": ...}")
      ->required();
  cmd->add_option("--template-name", args->template_name, "Pick a named template (default: \"default\")");
  cmd->add_flag("--no-generation-prompt", args->no_generation_prompt, "Do not open an assistant turn");
  cmd->add_flag("--ids", args->ids, "Print the token ids of the rendering instead of the text");
  cmd->callback([args] {
    auto ct = ValueOrFail(ChatTemplate::Load(args->tokenizer, args->template_name));
    auto msgs = nlohmann::ordered_json::parse(ReadFileOrFail(args->messages, "--messages"), nullptr, false);
    if (msgs.is_discarded()) Fail("--messages: " + args->messages + " is not valid JSON");
    ChatTemplateOptions opt;
    opt.add_generation_prompt = !args->no_generation_prompt;
    // {"messages": [...], "tools": [...], ...}: the other keys become template variables.
    if (msgs.is_object() && msgs.contains("messages")) {
      for (auto it = msgs.begin(); it != msgs.end(); ++it)
        if (it.key() != "messages") opt.extra[it.key()] = it.value();
      nlohmann::ordered_json m = msgs["messages"];
      msgs = std::move(m);
    }
    std::string text = ValueOrFail(ct.Render(msgs, opt));
    if (args->ids) {
      auto tok = ValueOrFail(LoadTokenizer(args->tokenizer));
      std::printf("%s\n", IdsJson(tok->Encode(text, false)).c_str());
      return;
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  });
}

}  // namespace

KILN_REGISTER_COMMAND(SetupTokenize);
KILN_REGISTER_COMMAND(SetupDetokenize);
KILN_REGISTER_COMMAND(SetupChatTemplate);

}  // namespace kiln::cli
