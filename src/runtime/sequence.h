// One request as the scheduler sees it: its tokens, how many of them have KV in
// the cache, and the blocks holding that KV.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/block_manager.h"

namespace kiln {

enum class SeqState { kWaiting, kRunning, kFinished };

struct Sequence {
  uint64_t id = 0;
  uint64_t arrival = 0;         // admission order key (FCFS); kept across preemption
  int priority = 0;             // higher first under the priority order
  std::vector<int32_t> tokens;  // [n_prompt + generated] prompt then generated ids
  int n_prompt = 0;
  int max_new_tokens = 0;
  int64_t n_computed = 0;  // leading tokens whose KV is in the cache
  BlockTable blocks;
  SeqState state = SeqState::kWaiting;
  bool admitted_once = false;
  int cached_prompt_tokens = 0;  // prompt tokens skipped thanks to the prefix cache (first admission)
  int preemptions = 0;

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int generated() const { return static_cast<int>(tokens.size()) - n_prompt; }
  std::span<const int32_t> prompt() const { return {tokens.data(), static_cast<size_t>(n_prompt)}; }
  std::span<const int32_t> output() const {
    return {tokens.data() + n_prompt, tokens.size() - static_cast<size_t>(n_prompt)};
  }
  // Most positions whose KV this sequence will ever hold: the last token is
  // never fed back.
  int64_t max_kv_tokens() const { return static_cast<int64_t>(n_prompt) + max_new_tokens - 1; }
};

}  // namespace kiln
