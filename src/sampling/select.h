// Partial selection for the sampling filters: top-k and the top-p prefix without full sorts.
// Candidate order everywhere: higher logit first, lower id first on ties.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kiln {

struct Candidate {
  float logit;
  int32_t id;
};

struct BetterCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

// The k best ids of `logits` (ids at -inf excluded; NaN must already be gone), sorted best
// first. One pass with a rising threshold and nth_element on a small buffer: O(vocab + k log k).
std::vector<Candidate> SelectTopK(std::span<const float> logits, size_t k);

// Top-p over unsorted candidates: finds the smallest best-first prefix whose weight sum
// (weights looked up by id in `weight_of`) reaches `target`, and reorders `cands` so that this
// prefix comes first (in no particular order). Returns its length: >= 1 when cands is not empty.
// Bisects on the mass with nth_element (O(n) expected); only the last block (< 2048) is sorted,
// so the mass is summed best first up to rounding.
size_t PartitionTopP(std::span<Candidate> cands, std::span<const float> weight_of, double target);

// Top-p over the whole vocab: the ids of the smallest best-first prefix whose weight sum reaches
// `target` (in no particular order). `weights` [vocab] must be a non-decreasing function of
// `logits` [vocab], > 0 for candidates and 0 for excluded ids. A radix pass over the float bits
// of the weights (2048 buckets) settles every bucket but the one where the mass crosses the
// target; only that bucket goes through PartitionTopP. O(vocab) whatever the nucleus size.
std::vector<Candidate> TopPNucleus(std::span<const float> logits, std::span<const float> weights,
                                   double target);

}  // namespace kiln
