// kiln logits: f32 logits of every position, written as safetensors (the testing hook).
#include <cstring>

#include "command.h"
#include "engine_flags.h"
#include "format/safetensors.h"

namespace kiln::cli {
namespace {

struct LogitsArgs {
  EngineFlags engine;
  std::string tokens, out;
  bool decode = false;
};

void SetupLogits(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Write the logits of every position to a safetensors file");
  auto a = std::make_shared<LogitsArgs>();
  a->engine.Add(cmd);
  cmd->add_option("--tokens", a->tokens, "token ids, e.g. 1,2,3")->required();
  cmd->add_option("--out", a->out, "output .safetensors (tensor 'logits' [n_tokens, vocab] f32)")->required();
  cmd->add_flag("--decode", a->decode, "one token at a time through the KV cache instead of one prefill");
  cmd->callback([a]() {
    auto ids = ParseTokenList(a->tokens, "--tokens");
    auto engine = OpenEngineOrFail(a->engine);
    auto logits = ValueOrFail(engine->Logits(ids, a->decode));
    std::vector<uint8_t> bytes(logits.size() * sizeof(float));
    std::memcpy(bytes.data(), logits.data(), bytes.size());
    SafetensorsWriter w;
    w.Add("logits", DType::kF32, {static_cast<int64_t>(ids.size()), engine->vocab_size()}, std::move(bytes));
    w.SetMetadata("device", engine->device_name());
    w.SetMetadata("path", a->decode ? "decode" : "prefill");
    CheckOk(w.Write(a->out));
  });
}

KILN_REGISTER_COMMAND(SetupLogits);

}  // namespace
}  // namespace kiln::cli
