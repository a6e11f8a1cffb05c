#include "engine_flags.h"

#include <chrono>

#include "command.h"

namespace kiln::cli {

SamplingParams SamplingFlags::Resolve() const {
  SamplingParams p = params;
  if (!seed_given)
    p.seed = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  CheckOk(p.Validate());
  return p;
}

void AddExecutorFlags(CLI::App* cmd, ExecutorOptions* e) {
  cmd->add_option("--device", e->device, "auto, cpu, cuda or cuda:N");
  cmd->add_flag("--f32", e->f32_activations, "compute activations in f32 on the GPU");
  cmd->add_option("--max-batch-size", e->max_batch_size, "sequences per step");
  cmd->add_option("--max-num-tokens", e->max_num_tokens, "tokens per step (prefill chunks + decode tokens)");
  cmd->add_option("--max-seq-len", e->max_seq_len, "longest sequence (prompt + output); 0 = the model's");
  cmd->add_option("--kv-cache-fraction", e->kv_cache_fraction, "fraction of free memory for the KV cache");
  cmd->add_option("--kv-cache-bytes", e->kv_cache_bytes, "hard cap on KV-cache bytes (0 = none)");
  cmd->add_option("--block-size", e->block_size, "KV-cache block size in tokens");
  cmd->add_flag("--enable-prefix-caching,!--disable-prefix-caching", e->enable_prefix_caching,
                "reuse KV blocks of shared prompt prefixes (default on)");
  cmd->add_option("--scheduler-policy", e->scheduler_policy,
                  "guaranteed_no_evict (default: admit what can finish) or max_utilization (admit greedily, "
                  "preempt by recompute)");
  cmd->add_option("--schedule-order", e->schedule_order, "fcfs or priority");
  cmd->add_flag("--enable-chunked-prefill,!--disable-chunked-prefill", e->enable_chunked_prefill,
                "split long prompts over steps (default on)");
  cmd->add_option("--max-queue-size", e->max_queue_size, "waiting requests accepted (0 = unbounded)");
}

std::unique_ptr<Engine> OpenEngineOrFail(const EngineFlags& flags) {
  return ValueOrFail(Engine::Open(flags.engine_dir, flags.options));
}

}  // namespace kiln::cli
