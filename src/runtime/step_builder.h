// Packs one step (chunks of several sequences) into StepInputs with a single host->backend
// copy. Buffers are reserved once at fixed offsets so pointers stay stable (CUDA graphs).
#pragma once
#include <span>
#include <vector>

#include "model/model.h"

namespace kiln {

enum class LogitsWanted { kNone, kLast, kAll };

struct SequenceChunk {
  std::span<const int32_t> tokens;       // tokens processed this step
  int32_t start_pos = 0;                 // position of tokens[0]
  std::span<const int32_t> block_table;  // physical blocks covering [0, start_pos + tokens.size())
  LogitsWanted logits = LogitsWanted::kLast;
};

class StepBuilder {
 public:
  Status Reserve(Backend& b, int max_tokens, int max_seqs, int max_blocks_per_seq);
  // The logits rows come out in chunk order (kAll: one per token). Tokens are packed with the
  // one-token chunks first (AttentionBatch::n_decode_seqs of them).
  Expected<StepInputs> Build(std::span<const SequenceChunk> chunks, int block_size);
  int max_tokens() const { return max_tokens_; }
  int max_seqs() const { return max_seqs_; }
  int max_blocks_per_seq() const { return max_blocks_; }

 private:
  Backend* backend_ = nullptr;
  DeviceBuffer device_;
  std::vector<int32_t> host_;
  std::vector<int> order_, first_token_;  // chunk order in the step; first packed token per chunk
  int max_tokens_ = 0, max_seqs_ = 0, max_blocks_ = 0;
};

}  // namespace kiln
