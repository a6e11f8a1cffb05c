// The paged KV block manager: allocation and ref counts, prefix hits through the hash chain,
// LRU eviction of unreferenced cached blocks, sliding-window release, shuffled hand-out.
#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "runtime/block_manager.h"

namespace kiln {
namespace {

std::vector<int32_t> Range(int32_t from, int n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

void Check(const BlockManager& bm, std::vector<const BlockTable*> tables) {
  Status s = bm.CheckInvariants(tables);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(BlockManager, AllocateAndFree) {
  BlockManager bm({.n_blocks = 8, .block_size = 4, .enable_prefix_caching = false});
  BlockTable a, b;
  EXPECT_TRUE(bm.Allocate(&a, 9));  // 3 blocks
  EXPECT_EQ(a.size(), 3);
  EXPECT_EQ(bm.BlocksNeeded(a, 12), 0);
  EXPECT_EQ(bm.BlocksNeeded(a, 13), 1);
  EXPECT_TRUE(bm.Allocate(&b, 20));  // 5 blocks
  EXPECT_EQ(bm.n_free(), 0);
  EXPECT_FALSE(bm.Allocate(&a, 13));  // nothing left: unchanged
  EXPECT_EQ(a.size(), 3);
  std::set<int32_t> ids(a.blocks.begin(), a.blocks.end());
  ids.insert(b.blocks.begin(), b.blocks.end());
  EXPECT_EQ(ids.size(), 8u);  // all distinct
  Check(bm, {&a, &b});
  bm.Free(&a);
  EXPECT_EQ(bm.n_free(), 3);
  EXPECT_TRUE(a.blocks.empty());
  Check(bm, {&b});
  bm.Free(&b);
  EXPECT_EQ(bm.n_used(), 0);
  Check(bm, {});
}

TEST(BlockManager, PrefixHitSharesBlocksAndCountsRefs) {
  BlockManager bm({.n_blocks = 16, .block_size = 4});
  auto tokens = Range(100, 10);  // 2 full blocks + 2 tokens
  BlockTable a;
  ASSERT_TRUE(bm.Allocate(&a, 10));
  bm.CacheFullBlocks(&a, tokens, 10);
  EXPECT_EQ(bm.n_cached(), 2);
  EXPECT_EQ(a.hashes.size(), 2u);
  // Same first block, different second: only the first matches.
  auto other = tokens;
  other[5] = 7;
  EXPECT_EQ(bm.PeekPrefix(other, 10).n_blocks, 1);
  // Full match, capped by max_blocks.
  PrefixMatch m = bm.PeekPrefix(tokens, 10);
  EXPECT_EQ(m.n_blocks, 2);
  EXPECT_EQ(m.n_unreferenced, 0);  // a still holds them
  EXPECT_EQ(bm.PeekPrefix(tokens, 1).n_blocks, 1);
  BlockTable b;
  EXPECT_EQ(bm.TakePrefix(tokens, 2, &b), 2);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  EXPECT_EQ(bm.ref_count(a.blocks[0]), 2);
  Check(bm, {&a, &b});
  // Freed, the cached blocks stay findable (and unreferenced).
  bm.Free(&a);
  bm.Free(&b);
  m = bm.PeekPrefix(tokens, 10);
  EXPECT_EQ(m.n_blocks, 2);
  EXPECT_EQ(m.n_unreferenced, 2);
  EXPECT_EQ(bm.n_free(), 16);
  Check(bm, {});
  // A different chain with the same second block contents does not match (parent differs).
  auto shifted = Range(104, 4);
  EXPECT_EQ(bm.PeekPrefix(shifted, 1).n_blocks, 0);
}

TEST(BlockManager, EvictsLeastRecentlyFreedCachedBlocksLast) {
  BlockManager bm({.n_blocks = 4, .block_size = 2});
  auto t1 = Range(10, 4), t2 = Range(50, 4);
  BlockTable a, b;
  ASSERT_TRUE(bm.Allocate(&a, 4));
  bm.CacheFullBlocks(&a, t1, 4);
  ASSERT_TRUE(bm.Allocate(&b, 4));
  bm.CacheFullBlocks(&b, t2, 4);
  bm.Free(&a);  // a's blocks are older in the free list: evicted first
  bm.Free(&b);
  BlockTable c;
  ASSERT_TRUE(bm.Allocate(&c, 2));  // evicts one block: a's tail block (freed first)
  EXPECT_EQ(bm.PeekPrefix(t1, 2).n_blocks, 1);
  EXPECT_EQ(bm.PeekPrefix(t2, 2).n_blocks, 2);
  ASSERT_TRUE(bm.Allocate(&c, 4));  // then a's head block
  EXPECT_EQ(bm.PeekPrefix(t1, 2).n_blocks, 0);
  EXPECT_EQ(bm.PeekPrefix(t2, 2).n_blocks, 2);
  Check(bm, {&c});
  // Taking t2's cached blocks revives them out of the free pool.
  BlockTable d;
  EXPECT_EQ(bm.TakePrefix(t2, 2, &d), 2);
  EXPECT_EQ(bm.n_free(), 0);
  Check(bm, {&c, &d});
  bm.Free(&c);
  bm.Free(&d);
  Check(bm, {});
}

TEST(BlockManager, DuplicateComputationKeepsOneCachedCopy) {
  BlockManager bm({.n_blocks = 8, .block_size = 2});
  auto t = Range(3, 4);
  BlockTable a, b;
  ASSERT_TRUE(bm.Allocate(&a, 4));
  ASSERT_TRUE(bm.Allocate(&b, 4));
  bm.CacheFullBlocks(&a, t, 4);
  bm.CacheFullBlocks(&b, t, 4);  // same content computed twice concurrently
  EXPECT_EQ(bm.n_cached(), 2);
  EXPECT_EQ(b.hashes, a.hashes);
  bm.Free(&a);
  bm.Free(&b);
  Check(bm, {});
  BlockTable c;
  EXPECT_EQ(bm.TakePrefix(t, 2, &c), 2);
  bm.Free(&c);
}

TEST(BlockManager, SlidingWindowReleasesWholeBlocksOnly) {
  BlockManager bm({.n_blocks = 8, .block_size = 4, .enable_prefix_caching = false});
  BlockTable a;
  ASSERT_TRUE(bm.Allocate(&a, 14));  // 4 blocks
  bm.ReleaseBefore(&a, 7);           // block 0 (positions 0-3) only
  EXPECT_EQ(a.n_released, 1);
  EXPECT_EQ(bm.n_free(), 5);
  bm.ReleaseBefore(&a, 3);  // never goes back
  EXPECT_EQ(a.n_released, 1);
  bm.ReleaseBefore(&a, 12);
  EXPECT_EQ(a.n_released, 3);
  Check(bm, {&a});
  ASSERT_TRUE(bm.Allocate(&a, 20));  // grows at the tail, logical indices unchanged
  EXPECT_EQ(a.size(), 5);
  Check(bm, {&a});
  bm.Free(&a);
  EXPECT_EQ(bm.n_free(), 8);
  Check(bm, {});
}

TEST(BlockManager, ShuffledHandOutIsAPermutation) {
  BlockManager plain({.n_blocks = 64, .block_size = 1});
  BlockManager shuffled({.n_blocks = 64, .block_size = 1, .shuffle_blocks = true});
  BlockTable a, b;
  ASSERT_TRUE(plain.Allocate(&a, 64));
  ASSERT_TRUE(shuffled.Allocate(&b, 64));
  EXPECT_EQ(a.blocks, Range(0, 64));
  EXPECT_NE(b.blocks, a.blocks);
  auto sorted = b.blocks;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, a.blocks);
  plain.Free(&a);
  shuffled.Free(&b);
}

}  // namespace
}  // namespace kiln
