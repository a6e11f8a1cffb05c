#include "runtime/future_claims.h"

#include <algorithm>

namespace kiln {
namespace {

void InsertByLastStep(std::vector<ClaimLane>& lanes, const ClaimLane& lane) {
  auto it = std::upper_bound(lanes.begin(), lanes.end(), lane.last_step,
                             [](int64_t t, const ClaimLane& l) { return t < l.last_step; });
  lanes.insert(it, lane);
}

// Peak growth of lanes sorted by last_step (see FutureClaims::Peak).
int64_t PeakGrowth(const std::vector<ClaimLane>& lanes, int64_t bs) {
  int64_t total_freed = 0;
  for (const ClaimLane& l : lanes) total_freed += l.freed;
  // From the last lane to finish to the first: at each distinct last step the
  // lanes seen so far are alive and the others have given their blocks back.
  int64_t alive = 0, alive_kv = 0, alive_held = 0, alive_freed = 0, peak = 0;
  for (size_t k = lanes.size(); k-- > 0;) {
    ++alive;
    alive_kv += lanes[k].kv_now + bs - 1;
    alive_held += lanes[k].held;
    alive_freed += lanes[k].freed;
    if (k > 0 && lanes[k - 1].last_step == lanes[k].last_step) continue;
    const int64_t t = lanes[k].last_step;
    peak = std::max(peak, (alive_kv + alive * t) / bs - alive_held - (total_freed - alive_freed));
  }
  return peak;
}

}  // namespace

void FutureClaims::AddLane(const ClaimLane& lane) { InsertByLastStep(lanes_, lane); }

int64_t FutureClaims::Peak(const ClaimLane* extra) const {
  if (!extra) return fixed_ + PeakGrowth(lanes_, block_size_);
  std::vector<ClaimLane> with = lanes_;
  InsertByLastStep(with, *extra);
  return fixed_ + PeakGrowth(with, block_size_);
}

}  // namespace kiln
