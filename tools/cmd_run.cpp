// kiln run (one generation) and kiln chat (interactive, multi-turn, streaming).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"
#include "engine_flags.h"
#include "tokenizer/chat_template.h"

namespace kiln::cli {
namespace {

struct RunArgs {
  EngineFlags engine;
  SamplingFlags sampling;
  std::string prompt;
  std::string tokens;
  bool echo = false;
  int max_tokens = 256;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool stream = false;
  bool output_tokens = false;
};

void PrintIds(const std::vector<int32_t>& ids, bool leading_space) {
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", (i || leading_space) ? " " : "", ids[i]);
}

void Run(const RunArgs& a) {
  if (!a.prompt.empty() && !a.tokens.empty()) Fail("run: give --prompt or --tokens, not both");
  if (a.max_tokens < 0) Fail("--max-tokens must be >= 0");
  GenerateOptions opts;
  opts.sampling = a.sampling.Resolve();
  opts.max_tokens = a.max_tokens;
  opts.stop = a.stop;
  opts.ignore_eos = a.ignore_eos;
  auto engine = OpenEngineOrFail(a.engine);
  std::vector<int32_t> prompt;
  if (!a.tokens.empty()) {
    prompt = ParseTokenList(a.tokens, "--tokens");
  } else if (!a.prompt.empty()) {
    prompt = ValueOrFail(engine->Encode(a.prompt, true));
  } else {
    if (engine->bos_id() < 0) Fail("run: the model has no BOS token; give --prompt or --tokens");
    prompt = {engine->bos_id()};
  }
  const bool text_out = !a.output_tokens;
  if (text_out && !engine->has_tokenizer()) Fail("run: this engine has no tokenizer; use --output-tokens");
  if (a.echo) {
    if (text_out) std::fputs(ValueOrFail(engine->Decode(prompt)).c_str(), stdout);
    else PrintIds(prompt, false);
  }
  StreamCallback cb;
  if (a.stream && text_out)
    cb = [](int32_t, std::string_view delta) {
      std::fwrite(delta.data(), 1, delta.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  GenerateResult r = ValueOrFail(engine->Generate(prompt, opts, cb));
  if (text_out) {
    if (!a.stream) std::fputs(r.text.c_str(), stdout);
  } else {
    PrintIds(r.tokens, a.echo && !prompt.empty());
  }
  std::printf("\n");
  std::fflush(stdout);
}

void SetupRun(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  auto a = std::make_shared<RunArgs>();
  a->engine.Add(cmd);
  a->sampling.Add(cmd);
  cmd->add_option("--prompt", a->prompt, "prompt text (default: start from BOS)");
  cmd->add_option("--tokens", a->tokens, "prompt as token ids, e.g. 1,2,3");
  cmd->add_flag("--echo", a->echo, "print the prompt before the output");
  cmd->add_option("--max-tokens", a->max_tokens, "tokens to generate");
  cmd->add_option("--stop", a->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "keep generating past EOS");
  cmd->add_flag("--stream", a->stream, "print text as it is produced");
  cmd->add_flag("--output-tokens", a->output_tokens, "print generated token ids instead of text");
  cmd->callback([a]() { Run(*a); });
}

struct ChatArgs {
  EngineFlags engine;
  SamplingFlags sampling;
  int max_tokens = 512;
  std::string system;
};

// Streams one reply; returns its text (empty on error, which is reported).
std::string Reply(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                  std::vector<int32_t>* tokens) {
  auto r = engine.Generate(prompt, opts, [](int32_t, std::string_view d) {
    std::fwrite(d.data(), 1, d.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::printf("\n");
  std::fflush(stdout);
  if (!r.ok()) {
    std::fprintf(stderr, "kiln chat: %s\n", r.status().message().c_str());
    return {};
  }
  if (tokens) *tokens = r->tokens;
  return r->text;
}

void Chat(const ChatArgs& a) {
  auto engine = OpenEngineOrFail(a.engine);
  if (!engine->has_tokenizer()) Fail("chat: this engine has no tokenizer");
  GenerateOptions opts;
  opts.sampling = a.sampling.Resolve();
  opts.max_tokens = a.max_tokens;
  // With a chat template the conversation is re-rendered each turn; without one, turns are
  // plain text lines appended to one running token sequence.
  auto tmpl = ChatTemplate::Load(a.engine.engine_dir);
  nlohmann::json messages = nlohmann::json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  std::vector<int32_t> history;
  if (!tmpl.ok() && !a.system.empty()) history = ValueOrFail(engine->Encode(a.system + "\n", true));
  std::fprintf(stderr, "kiln chat on %s (%s): type a message, Ctrl-D to quit.\n", engine->device_name().c_str(),
               tmpl.ok() ? "chat template" : "plain text");
  std::string line;
  while (true) {
    std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (tmpl.ok()) {
      messages.push_back({{"role", "user"}, {"content", line}});
      auto text = tmpl->Render(messages);
      if (!text.ok()) {
        std::fprintf(stderr, "kiln chat: %s\n", text.status().message().c_str());
        messages.erase(messages.end() - 1);
        continue;
      }
      auto ids = ValueOrFail(engine->Encode(*text, false));
      std::string reply = Reply(*engine, ids, opts, nullptr);
      messages.push_back({{"role", "assistant"}, {"content", reply}});
      continue;
    }
    auto ids = ValueOrFail(engine->Encode(line + "\n", history.empty()));
    history.insert(history.end(), ids.begin(), ids.end());
    if (static_cast<int64_t>(history.size()) + 1 >= engine->max_seq_len()) {
      std::fprintf(stderr, "kiln chat: the conversation reached max_seq_len; starting over\n");
      history = ValueOrFail(engine->Encode(line + "\n", true));
    }
    std::vector<int32_t> out;
    Reply(*engine, history, opts, &out);
    history.insert(history.end(), out.begin(), out.end());
  }
  std::fprintf(stderr, "\n");
}

void SetupChat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Interactive multi-turn chat (streaming)");
  auto a = std::make_shared<ChatArgs>();
  a->engine.Add(cmd);
  a->sampling.Add(cmd);
  cmd->add_option("--max-tokens", a->max_tokens, "tokens per reply");
  cmd->add_option("--system", a->system, "system prompt");
  cmd->callback([a]() { Chat(*a); });
}

KILN_REGISTER_COMMAND(SetupRun);
KILN_REGISTER_COMMAND(SetupChat);

}  // namespace
}  // namespace kiln::cli
