// Memory planning for the executor: what the weights, activations, step
// workspace and KV cache take, and how many KV blocks the budget buys
// (kv_cache_fraction of the free memory, capped by kv_cache_bytes; on the CPU
// backend kv_cache_bytes or a 256 MiB default).
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "kiln/executor.h"
#include "model/model_config.h"

namespace kiln {

struct StepShape {
  int64_t max_tokens = 0;  // tokens per step
  int64_t max_seqs = 0;    // sequences (and logits rows) per step
  int64_t max_blocks_per_seq = 0;
};

// Bytes Model::Reserve(max_tokens, max_logits) allocates (mirrors its buffer
// list).
size_t ActivationBytes(const ModelConfig& c, DType act, int64_t max_tokens, int64_t max_logits);
// Bytes StepBuilder::Reserve allocates on the backend.
size_t StepWorkspaceBytes(const StepShape& s);
// Largest allocation the backend grants now (found by bisection; nothing stays
// allocated).
size_t ProbeFreeMemory(Backend& b);

// Fills plan.kv_cache / kv_blocks from the options;
// plan.weights/activations/workspace must be set. The block count is capped at
// what max_batch_size sequences of max_seq_len could ever use.
Status PlanKvCache(Backend& b, bool is_cpu, const ModelConfig& c, const ExecutorOptions& o, MemoryPlan* plan);

}  // namespace kiln
