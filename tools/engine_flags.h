// Flags shared by every command that opens an engine (run, chat, logits, bench, serve).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>

#include "kiln/engine.h"
#include "kiln/executor.h"
#include "kiln/sampling_params.h"

namespace kiln::cli {

struct EngineFlags {
  std::string engine_dir;
  EngineOptions options;
  void Add(CLI::App* cmd) {
    cmd->add_option("--engine", engine_dir, "engine directory (from kiln build)")->required();
    cmd->add_option("--device", options.device, "auto, cpu, cuda or cuda:N");
    cmd->add_flag("--f32", options.f32_activations, "compute activations in f32 on the GPU");
    cmd->add_option("--max-seq-len", options.max_seq_len, "longest sequence (prompt + output) in tokens");
    cmd->add_option("--block-size", options.block_size, "KV cache block size in tokens");
    cmd->add_option("--max-num-tokens", options.max_num_tokens, "tokens per forward step (prefill chunk)");
  }
};

struct SamplingFlags {
  SamplingParams params;
  bool seed_given = false;
  void Add(CLI::App* cmd) {
    cmd->add_option("--temperature", params.temperature, "sampling temperature; 0 = greedy");
    cmd->add_option("--top-k", params.top_k, "keep the k most likely tokens (0 = off)");
    cmd->add_option("--top-p", params.top_p, "nucleus sampling mass (1 = off)");
    cmd->add_option("--min-p", params.min_p, "drop tokens below min_p x the top probability");
    cmd->add_option("--repetition-penalty", params.repetition_penalty, "HF repetition penalty (1 = off)");
    cmd->add_option("--presence-penalty", params.presence_penalty, "OpenAI presence penalty");
    cmd->add_option("--frequency-penalty", params.frequency_penalty, "OpenAI frequency penalty");
    cmd->add_option("--seed", params.seed, "random seed (default: from the clock)")
        ->each([this](const std::string&) { seed_given = true; });
  }
  SamplingParams Resolve() const;
};

// The executor's device and run-time memory knobs, the same on every command that runs an
// Executor (bench, serve): --device --f32 --max-batch-size --max-num-tokens --max-seq-len
// --kv-cache-fraction --kv-cache-bytes --block-size --[en|dis]able-prefix-caching
// --scheduler-policy --schedule-order --[en|dis]able-chunked-prefill --max-queue-size.
void AddExecutorFlags(CLI::App* cmd, ExecutorOptions* e);

std::unique_ptr<Engine> OpenEngineOrFail(const EngineFlags& flags);

}  // namespace kiln::cli
