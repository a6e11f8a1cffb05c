#include "runtime/kv_cache.h"

namespace kiln {

size_t KvCache::BytesPerBlock(const ModelConfig& c, DType act, int block_size) {
  return 2 * static_cast<size_t>(c.n_layers) * DTypeBytes(act, static_cast<int64_t>(block_size) * c.kv_dim());
}

Expected<std::unique_ptr<KvCache>> KvCache::Create(Backend& b, const ModelConfig& c, int64_t n_blocks,
                                                   int block_size) {
  if (n_blocks <= 0 || block_size <= 0)
    return InvalidArgument("KV cache needs a positive number of blocks and block size (got " +
                           std::to_string(n_blocks) + " x " + std::to_string(block_size) + ")");
  auto kv = std::unique_ptr<KvCache>(new KvCache());
  const DType act = b.act_dtype();
  const size_t per_pool = DTypeBytes(act, n_blocks * block_size * c.kv_dim());
  KILN_ASSIGN_OR_RETURN(kv->buffer_, AllocBuffer(b, per_pool * 2 * c.n_layers));
  char* base = static_cast<char*>(kv->buffer_.get());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    KvCacheLayer layer;
    layer.k = Tensor(base + (2 * l) * per_pool, act, {n_blocks, block_size, c.n_kv_heads, c.head_dim});
    layer.v = Tensor(base + (2 * l + 1) * per_pool, act, {n_blocks, block_size, c.n_kv_heads, c.head_dim});
    kv->layers_.push_back(layer);
  }
  kv->n_blocks_ = n_blocks;
  kv->block_size_ = block_size;
  return kv;
}

}  // namespace kiln
