// The KV blocks that running sequences may still claim at future steps: what
// guaranteed_no_evict admission sets aside. A sequence past its prefill that
// advances one token every step is a lane: at step t (0 = the step being
// scheduled) it holds BlocksFor(kv_now + t) blocks until t = last_step, and
// its own blocks go back to the pool after that. Any other sequence is charged
// a fixed number of blocks it may still claim at any time.
#pragma once
#include <cstdint>
#include <vector>

namespace kiln {

struct ClaimLane {
  int64_t kv_now = 0;     // KV positions held after this step
  int64_t last_step = 0;  // the step after which it finishes
  int64_t held = 0;       // blocks held now (covering kv_now)
  int64_t freed = 0;      // blocks given back when it finishes (those no other sequence holds)
};

class FutureClaims {
 public:
  explicit FutureClaims(int block_size) : block_size_(block_size) {}

  void AddFixed(int64_t blocks) { fixed_ += blocks; }
  void AddLane(const ClaimLane& lane);
  // The most blocks claimed beyond those held now, over every future step
  // (never below the fixed part), counting `extra` too when given. Between
  // two finishes a lane only grows, so the peak falls on some lane's last
  // step. A sum of ceilings is bounded by the ceiling of the sum plus
  // (block_size - 1) per lane: O(lanes), at most one block per lane above the
  // exact figure.
  int64_t Peak(const ClaimLane* extra = nullptr) const;
  int n_lanes() const { return static_cast<int>(lanes_.size()); }

 private:
  int block_size_;
  int64_t fixed_ = 0;
  std::vector<ClaimLane> lanes_;  // sorted by last_step
};

}  // namespace kiln
