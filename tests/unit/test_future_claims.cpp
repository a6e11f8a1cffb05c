// FutureClaims, the peak that guaranteed_no_evict admission sets aside, against
// a step-by-step simulation of random lanes: never below the exact peak (the
// guarantee) and at most one block per lane above it; a lane passed to Peak()
// counts as if added.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "runtime/future_claims.h"

namespace kiln {
namespace {

int64_t ExactPeak(const std::vector<ClaimLane>& lanes, int64_t fixed, int64_t bs) {
  int64_t horizon = 0;
  for (const ClaimLane& l : lanes) horizon = std::max(horizon, l.last_step + 1);
  int64_t peak = 0;
  for (int64_t t = 0; t <= horizon; ++t) {
    int64_t growth = 0;
    for (const ClaimLane& l : lanes)
      growth += t <= l.last_step ? (l.kv_now + t + bs - 1) / bs - l.held : -l.freed;
    peak = std::max(peak, growth);
  }
  return fixed + peak;
}

TEST(FutureClaims, PeakBoundsTheExactPeakFromAbove) {
  std::mt19937 g(7);
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); };
  for (int trial = 0; trial < 500; ++trial) {
    const int bs = rnd(1, 16);
    FutureClaims claims(bs);
    std::vector<ClaimLane> lanes;
    const int64_t fixed = rnd(0, 3) == 0 ? rnd(0, 20) : 0;
    claims.AddFixed(fixed);
    const int n = rnd(0, 24);
    for (int i = 0; i < n; ++i) {
      ClaimLane l;
      l.kv_now = rnd(1, 200);
      l.last_step = rnd(0, 3) == 0 ? rnd(0, 3) : rnd(0, 300);  // ties are common
      l.held = (l.kv_now + bs - 1) / bs;
      l.freed = rnd(0, 4) == 0 ? rnd(0, static_cast<int>(l.held)) : l.held;  // some blocks shared
      lanes.push_back(l);
    }
    for (size_t i = 0; i + 1 < lanes.size(); ++i) claims.AddLane(lanes[i]);
    if (!lanes.empty()) {
      const int64_t with_extra = claims.Peak(&lanes.back());
      claims.AddLane(lanes.back());
      ASSERT_EQ(with_extra, claims.Peak()) << "trial " << trial;
    }
    const int64_t exact = ExactPeak(lanes, fixed, bs);
    ASSERT_GE(claims.Peak(), exact) << "trial " << trial;
    ASSERT_LE(claims.Peak(), exact + n) << "trial " << trial;
  }
}

TEST(FutureClaims, StaggeredLanesPeakBelowTheirWholeLengths) {
  // 8 lanes of 64-token requests, block size 1, at 8-step intervals: the whole
  // lengths would sum to 8 * 64 blocks; the real peak is where the oldest
  // finishes.
  FutureClaims claims(1);
  int64_t held = 0;
  for (int i = 0; i < 8; ++i) {
    const int64_t kv = 8 + 7 * i;
    claims.AddLane({.kv_now = kv, .last_step = 64 - kv, .held = kv, .freed = kv});
    held += kv;
  }
  EXPECT_EQ(claims.Peak(),
            8 * (64 - 57));  // all 8 grow until the oldest ends at step 7
  EXPECT_LT(held + claims.Peak(), 8 * 64);
}

}  // namespace
}  // namespace kiln
