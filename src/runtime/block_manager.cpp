#include "runtime/block_manager.h"

#include <algorithm>
#include <random>

namespace kiln {
namespace {

constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;  // the "parent" of a sequence's first block

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

BlockManager::BlockManager(const BlockManagerOptions& o)
    : n_blocks_(o.n_blocks), block_size_(o.block_size), prefix_caching_(o.enable_prefix_caching) {
  ref_.assign(n_blocks_, 0);
  prev_.assign(n_blocks_, kNone);
  next_.assign(n_blocks_, kNone);
  in_free_.assign(n_blocks_, 0);
  has_hash_.assign(n_blocks_, 0);
  hash_.assign(n_blocks_, 0);
  parent_hash_.assign(n_blocks_, 0);
  if (prefix_caching_) block_tokens_.assign(static_cast<size_t>(n_blocks_) * block_size_, 0);
  std::vector<int32_t> order(n_blocks_);
  for (int64_t i = 0; i < n_blocks_; ++i) order[i] = static_cast<int32_t>(i);
  if (o.shuffle_blocks) {
    std::mt19937_64 rng(o.seed);
    std::shuffle(order.begin(), order.end(), rng);
  }
  for (int32_t b : order) ListPushBack(b);
}

uint64_t BlockManager::HashBlock(uint64_t parent, std::span<const int32_t> tokens) const {
  uint64_t h = Mix(parent);
  for (int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

int32_t BlockManager::Lookup(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return kNone;
  const int32_t b = it->second;
  if (parent_hash_[b] != parent) return kNone;
  const int32_t* stored = block_tokens_.data() + static_cast<size_t>(b) * block_size_;
  if (!std::equal(tokens.begin(), tokens.end(), stored)) return kNone;
  return b;
}

void BlockManager::ListRemove(int32_t b) {
  if (prev_[b] != kNone)
    next_[prev_[b]] = next_[b];
  else
    head_ = next_[b];
  if (next_[b] != kNone)
    prev_[next_[b]] = prev_[b];
  else
    tail_ = prev_[b];
  prev_[b] = next_[b] = kNone;
  in_free_[b] = 0;
  --n_free_;
}

void BlockManager::ListPushBack(int32_t b) {
  prev_[b] = tail_;
  next_[b] = kNone;
  if (tail_ != kNone)
    next_[tail_] = b;
  else
    head_ = b;
  tail_ = b;
  in_free_[b] = 1;
  ++n_free_;
}

void BlockManager::ListPushFront(int32_t b) {
  prev_[b] = kNone;
  next_[b] = head_;
  if (head_ != kNone)
    prev_[head_] = b;
  else
    tail_ = b;
  head_ = b;
  in_free_[b] = 1;
  ++n_free_;
}

void BlockManager::Uncache(int32_t b) {
  if (!has_hash_[b]) return;
  auto it = cached_.find(hash_[b]);
  if (it != cached_.end() && it->second == b) cached_.erase(it);
  has_hash_[b] = 0;
}

int32_t BlockManager::PopFree() {
  const int32_t b = head_;
  ListRemove(b);
  Uncache(b);
  return b;
}

void BlockManager::Unref(int32_t b) {
  if (--ref_[b] > 0) return;
  // Cached blocks keep their content for a later prefix hit and are evicted
  // least recently freed first; plain blocks have nothing worth keeping and go
  // to the front.
  if (has_hash_[b])
    ListPushBack(b);
  else
    ListPushFront(b);
}

int64_t BlockManager::BlocksNeeded(const BlockTable& t, int64_t n_tokens) const {
  return std::max<int64_t>(0, BlocksFor(n_tokens) - t.size());
}

PrefixMatch BlockManager::PeekPrefix(std::span<const int32_t> tokens, int max_blocks) const {
  PrefixMatch m;
  if (!prefix_caching_) return m;
  const int full =
      static_cast<int>(std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_));
  uint64_t parent = kRootHash;
  for (int i = 0; i < full; ++i) {
    auto blk = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = HashBlock(parent, blk);
    const int32_t b = Lookup(h, parent, blk);
    if (b == kNone) break;
    ++m.n_blocks;
    if (ref_[b] == 0) ++m.n_unreferenced;
    if (ref_[b] == 1) ++m.n_single_ref;
    parent = h;
  }
  return m;
}

int BlockManager::TakePrefix(std::span<const int32_t> tokens, int max_blocks, BlockTable* t) {
  if (!prefix_caching_ || !t->blocks.empty()) return 0;
  const int full =
      static_cast<int>(std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_));
  uint64_t parent = kRootHash;
  for (int i = 0; i < full; ++i) {
    auto blk = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = HashBlock(parent, blk);
    const int32_t b = Lookup(h, parent, blk);
    if (b == kNone) break;
    if (ref_[b]++ == 0) ListRemove(b);
    t->blocks.push_back(b);
    t->hashes.push_back(h);
    parent = h;
  }
  return static_cast<int>(t->blocks.size());
}

bool BlockManager::Allocate(BlockTable* t, int64_t n_tokens) {
  const int64_t need = BlocksNeeded(*t, n_tokens);
  if (need > n_free_) return false;
  for (int64_t i = 0; i < need; ++i) {
    const int32_t b = PopFree();
    ref_[b] = 1;
    t->blocks.push_back(b);
  }
  return true;
}

void BlockManager::CacheFullBlocks(BlockTable* t, std::span<const int32_t> tokens, int64_t n_computed) {
  if (!prefix_caching_) return;
  const int64_t full = std::min<int64_t>(n_computed, static_cast<int64_t>(tokens.size())) / block_size_;
  for (int64_t i = static_cast<int64_t>(t->hashes.size()); i < full && i < t->size(); ++i) {
    const uint64_t parent = i == 0 ? kRootHash : t->hashes[i - 1];
    auto blk = tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = HashBlock(parent, blk);
    t->hashes.push_back(h);
    if (i < t->n_released) continue;  // no longer ours
    const int32_t b = t->blocks[i];
    if (has_hash_[b]) continue;  // already cached (a prefix hit)
    // Another sequence computed the same block concurrently: keep theirs, ours
    // stays plain.
    if (cached_.count(h)) continue;
    cached_[h] = b;
    has_hash_[b] = 1;
    hash_[b] = h;
    parent_hash_[b] = parent;
    std::copy(blk.begin(), blk.end(), block_tokens_.begin() + static_cast<size_t>(b) * block_size_);
  }
}

void BlockManager::ReleaseBefore(BlockTable* t, int64_t first_needed) {
  const int64_t n = std::min<int64_t>(std::max<int64_t>(first_needed, 0) / block_size_, t->size());
  for (int64_t i = t->n_released; i < n; ++i) {
    Unref(t->blocks[i]);
    t->blocks[i] = 0;  // stale: attention never reads outside the window
  }
  t->n_released = static_cast<int>(std::max<int64_t>(n, t->n_released));
}

void BlockManager::Free(BlockTable* t) {
  for (int64_t i = t->size() - 1; i >= t->n_released; --i) Unref(t->blocks[i]);
  t->blocks.clear();
  t->hashes.clear();
  t->n_released = 0;
}

Status BlockManager::CheckInvariants(std::span<const BlockTable* const> tables) const {
  std::vector<int> refs(n_blocks_, 0);
  for (const BlockTable* t : tables)
    for (int64_t i = t->n_released; i < t->size(); ++i) {
      const int32_t b = t->blocks[i];
      if (b < 0 || b >= n_blocks_)
        return Internal("block table holds out-of-range block " + std::to_string(b));
      ++refs[b];
    }
  int64_t free_count = 0;
  for (int32_t b = head_, prev = kNone; b != kNone; prev = b, b = next_[b]) {
    if (prev_[b] != prev) return Internal("free list: broken back link at block " + std::to_string(b));
    if (!in_free_[b]) return Internal("free list: block " + std::to_string(b) + " not marked free");
    if (++free_count > n_blocks_) return Internal("free list: cycle");
  }
  if (free_count != n_free_)
    return Internal("free list holds " + std::to_string(free_count) + " blocks, counter says " +
                    std::to_string(n_free_));
  for (int64_t b = 0; b < n_blocks_; ++b) {
    if (refs[b] != ref_[b])
      return Internal("block " + std::to_string(b) + ": ref count " + std::to_string(ref_[b]) +
                      ", tables hold " + std::to_string(refs[b]));
    if ((ref_[b] == 0) != (in_free_[b] != 0))
      return Internal("block " + std::to_string(b) + ": free-list membership disagrees with ref count");
  }
  for (const auto& [h, b] : cached_)
    if (!has_hash_[b] || hash_[b] != h)
      return Internal("hash index points at block " + std::to_string(b) + " without that hash");
  for (int64_t b = 0; b < n_blocks_; ++b)
    if (has_hash_[b]) {
      auto it = cached_.find(hash_[b]);
      if (it == cached_.end() || it->second != b)
        return Internal("block " + std::to_string(b) + " has a hash the index does not list");
    }
  return Status::Ok();
}

}  // namespace kiln
