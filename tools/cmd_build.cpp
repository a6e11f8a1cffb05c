// kiln build: checkpoint -> engine directory.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "builder/builder.h"
#include "command.h"

namespace kiln::cli {
namespace {

void SetupBuild(CLI::App& app) {
  auto* cmd = app.add_subcommand("build", "Build an engine directory from a checkpoint (HF, llama2.c .bin, GGUF)");
  auto o = std::make_shared<BuildOptions>();
  cmd->add_option("--checkpoint", o->checkpoint, "HF checkpoint directory, llama2.c .bin or .gguf file");
  cmd->add_option("--config", o->hf_config, "HF config.json giving the model shape (with --dummy-weights)");
  cmd->add_flag("--dummy-weights", o->dummy_weights, "generate seeded random weights at load instead of storing them");
  cmd->add_option("--seed", o->dummy_seed, "seed of the dummy weights");
  cmd->add_option("--out", o->out, "engine directory to write")->required();
  cmd->add_option("--dtype", o->dtype, "weight dtype: auto, f32, f16, bf16")
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16"}));
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer file or folder (default: found with the checkpoint)");
  cmd->add_option("--lora", o->lora, "PEFT LoRA adapter directory to merge (repeatable)");
  cmd->callback([o]() {
    if (o->checkpoint.empty() && !o->dummy_weights) Fail("build: give --checkpoint, or --config with --dummy-weights");
    const bool tty = isatty(STDERR_FILENO);
    auto t0 = std::chrono::steady_clock::now();
    size_t last_pct = 101;
    Status st = BuildEngine(*o, [&](const std::string& stage, size_t done, size_t total) {
      const size_t pct = total ? done * 100 / total : 100;
      if (tty) {
        std::fprintf(stderr, "\rkiln build: %s %zu/%zu (%zu%%)", stage.c_str(), done, total, pct);
        if (done == total) std::fprintf(stderr, "\n");
      } else if (pct / 10 != last_pct / 10 || done == total) {
        std::fprintf(stderr, "kiln build: %s %zu/%zu (%zu%%)\n", stage.c_str(), done, total, pct);
      }
      last_pct = pct;
    });
    CheckOk(st);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "kiln build: engine written to %s in %.2f s\n", o->out.c_str(), s);
  });
}

KILN_REGISTER_COMMAND(SetupBuild);

}  // namespace
}  // namespace kiln::cli
