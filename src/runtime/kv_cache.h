// The paged KV cache: for every layer, K and V pools of n_blocks blocks of block_size tokens.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"

namespace kiln {

class KvCache {
 public:
  // Bytes one block costs across all layers (K and V).
  static size_t BytesPerBlock(const ModelConfig& c, DType act, int block_size);
  static Expected<std::unique_ptr<KvCache>> Create(Backend& b, const ModelConfig& c, int64_t n_blocks,
                                                   int block_size);
  std::vector<KvCacheLayer>& layers() { return layers_; }
  int64_t n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  size_t bytes() const { return buffer_.bytes(); }

 private:
  DeviceBuffer buffer_;
  std::vector<KvCacheLayer> layers_;  // each K/V: [n_blocks, block_size, n_kv_heads, head_dim]
  int64_t n_blocks_ = 0;
  int block_size_ = 0;
};

}  // namespace kiln
