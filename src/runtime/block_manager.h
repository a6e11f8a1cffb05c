// The paged KV-cache block manager: hands out fixed-size physical blocks,
// counts references, and caches full blocks under a hash chain (hash of the
// parent block's hash and the block's token ids) so that requests sharing a
// prompt prefix share its KV. Unreferenced cached blocks stay reusable until
// evicted, least recently freed first. Not thread-safe: the step loop owns it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/status.h"

namespace kiln {

struct BlockManagerOptions {
  int64_t n_blocks = 0;
  int block_size = 16;
  bool enable_prefix_caching = true;
  bool shuffle_blocks = false;  // testing: hand out physical blocks in shuffled order
  uint64_t seed = 0x6b696c6e;   // for shuffle_blocks
};

// The physical blocks one sequence holds, in logical order.
struct BlockTable {
  std::vector<int32_t> blocks;   // [n logical blocks] physical ids; entries < n_released are stale
  std::vector<uint64_t> hashes;  // [n full blocks hashed so far] the hash chain of the sequence
  int n_released = 0;            // leading blocks given back (sliding window); they hold no reference
  int64_t size() const { return static_cast<int64_t>(blocks.size()); }
};

struct PrefixMatch {
  int n_blocks = 0;        // leading full blocks found in the cache
  int n_unreferenced = 0;  // of those, how many sit in the free pool (taking them shrinks it)
  int n_single_ref = 0;    // of those, how many exactly one sequence holds now
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerOptions& options);

  int64_t n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  int64_t n_free() const { return n_free_; }  // unreferenced blocks (cached ones included): allocatable
  int64_t n_used() const { return n_blocks_ - n_free_; }
  int64_t n_cached() const { return static_cast<int64_t>(cached_.size()); }
  int ref_count(int32_t block) const { return ref_[block]; }

  // Blocks covering n_tokens positions.
  int64_t BlocksFor(int64_t n_tokens) const { return (n_tokens + block_size_ - 1) / block_size_; }
  // New blocks the table needs to cover n_tokens positions.
  int64_t BlocksNeeded(const BlockTable& table, int64_t n_tokens) const;

  // The cached full blocks that start `tokens` (at most max_blocks), without
  // taking them.
  PrefixMatch PeekPrefix(std::span<const int32_t> tokens, int max_blocks) const;
  // Takes a reference on each cached block PeekPrefix finds and puts them in
  // the (empty) table. Returns how many blocks it took.
  int TakePrefix(std::span<const int32_t> tokens, int max_blocks, BlockTable* table);

  // Grows the table to cover n_tokens positions; false (and nothing changed)
  // when the free pool is too small. Cached unreferenced blocks are evicted,
  // least recently freed first.
  bool Allocate(BlockTable* table, int64_t n_tokens);
  // Registers the full blocks among the first n_computed tokens in the prefix
  // cache.
  void CacheFullBlocks(BlockTable* table, std::span<const int32_t> tokens, int64_t n_computed);
  // Sliding window: gives back the blocks that lie wholly before position
  // first_needed.
  void ReleaseBefore(BlockTable* table, int64_t first_needed);
  // Gives back every block of the table (tail first, so a prefix outlives its
  // continuation).
  void Free(BlockTable* table);

  // Tests: every reference is accounted for by the tables, the free list holds
  // exactly the unreferenced blocks, and the hash index points at blocks
  // holding that hash.
  Status CheckInvariants(std::span<const BlockTable* const> tables) const;

 private:
  static constexpr int32_t kNone = -1;
  uint64_t HashBlock(uint64_t parent, std::span<const int32_t> tokens) const;
  // The cached block holding this chain link, or kNone.
  int32_t Lookup(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const;
  void ListRemove(int32_t b);
  void ListPushBack(int32_t b);
  void ListPushFront(int32_t b);
  int32_t PopFree();  // evicts the block's cache entry if it has one
  void Unref(int32_t b);
  void Uncache(int32_t b);

  int64_t n_blocks_;
  int block_size_;
  bool prefix_caching_;
  std::vector<int> ref_;  // [n_blocks]
  std::vector<int32_t> prev_,
      next_;                      // [n_blocks] the free list (doubly linked, head evicted first)
  std::vector<uint8_t> in_free_;  // [n_blocks]
  int32_t head_ = kNone, tail_ = kNone;
  int64_t n_free_ = 0;
  // Prefix cache: block -> its hash, parent hash and tokens (to rule out hash
  // collisions).
  std::vector<uint8_t> has_hash_;                 // [n_blocks]
  std::vector<uint64_t> hash_, parent_hash_;      // [n_blocks]
  std::vector<int32_t> block_tokens_;             // [n_blocks, block_size]
  std::unordered_map<uint64_t, int32_t> cached_;  // hash -> block
};

}  // namespace kiln
