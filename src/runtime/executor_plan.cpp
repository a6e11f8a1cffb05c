#include "runtime/executor_plan.h"

#include <algorithm>

#include "runtime/kv_cache.h"

namespace kiln {

size_t ActivationBytes(const ModelConfig& c, DType act, int64_t T, int64_t L) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  // x, h, qkv, attn, o, gate_up, act, down, last hidden, logits, tmp (model.cpp
  // Model::Reserve)
  const int64_t sizes[] = {T * d, T * d, T * c.qkv_dim(), T * c.q_dim(),    T * d, T * 2 * f,
                           T * f, T * d, L * d,           L * c.vocab_size, T * d};
  size_t total = 0;
  for (int64_t n : sizes) total += DTypeBytes(act, n);
  return total;
}

size_t StepWorkspaceBytes(const StepShape& s) {
  // tokens, positions, slots, logit rows [T] | q_start [S+1] | seq_lens [S] |
  // tables [S, B]  (i32)
  return sizeof(int32_t) *
         static_cast<size_t>(4 * s.max_tokens + 2 * s.max_seqs + 1 + s.max_seqs * s.max_blocks_per_seq);
}

size_t ProbeFreeMemory(Backend& b) {
  // The backend interface has no memory query yet; bisect on allocation (a
  // failed device allocation is harmless) to 64 MiB.
  constexpr size_t kStep = size_t{64} << 20;
  size_t lo = 0, hi = size_t{1} << 40;
  while (hi - lo > kStep) {
    const size_t mid = lo + (hi - lo) / 2;
    auto p = b.Alloc(mid);
    if (p.ok() && p.value() != nullptr) {
      b.Free(p.value());
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

Status PlanKvCache(Backend& b, bool is_cpu, const ModelConfig& c, const ExecutorOptions& o,
                   MemoryPlan* plan) {
  const size_t per_block = KvCache::BytesPerBlock(c, b.act_dtype(), o.block_size);
  size_t budget = 0;
  if (is_cpu) {
    budget = o.kv_cache_bytes > 0 ? static_cast<size_t>(o.kv_cache_bytes) : (size_t{256} << 20);
  } else {
    const size_t free_bytes = ProbeFreeMemory(b);
    budget = static_cast<size_t>(static_cast<double>(free_bytes) * o.kv_cache_fraction);
    if (o.kv_cache_bytes > 0) budget = std::min(budget, static_cast<size_t>(o.kv_cache_bytes));
  }
  const int64_t blocks_per_seq = (plan->max_seq_len + o.block_size - 1) / o.block_size;
  int64_t n_blocks = static_cast<int64_t>(budget / per_block);
  n_blocks = std::min<int64_t>(n_blocks, static_cast<int64_t>(o.max_batch_size) * blocks_per_seq);
  if (n_blocks < 1)
    return Status(ErrorCode::kOutOfMemory, "kv_cache_bytes/kv_cache_fraction: a budget of " +
                                               std::to_string(budget) + " bytes holds no KV block of " +
                                               std::to_string(per_block) + " bytes");
  plan->kv_blocks = n_blocks;
  plan->kv_cache = per_block * static_cast<size_t>(n_blocks);
  plan->block_size = o.block_size;
  return Status::Ok();
}

}  // namespace kiln
