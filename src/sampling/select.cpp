#include "sampling/select.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>

namespace kiln {
namespace {

// Below this many candidates the top-p search just sorts.
constexpr size_t kSortBelow = 2048;
// Radix buckets of a positive float: its top 11 bits after the sign (exponent + 3 mantissa
// bits), which order like the floats themselves.
constexpr int kBucketShift = 20;
constexpr size_t kBuckets = size_t{1} << (31 - kBucketShift);

uint32_t BucketOf(float w) { return std::bit_cast<uint32_t>(w) >> kBucketShift; }

}  // namespace

std::vector<Candidate> SelectTopK(std::span<const float> logits, size_t k) {
  std::vector<Candidate> buf;  // [<= cap] candidates above the threshold
  if (k == 0) return buf;
  const size_t cap = std::max<size_t>(2 * k, 1024);
  buf.reserve(cap);
  // Once the buffer has been cut to k, `threshold` is the k-th best logit so far: a later id
  // with a logit <= threshold ranks below all k kept ones (ties go to the lower id).
  float threshold = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    if (!(l > threshold)) continue;  // also drops -inf before the first cut
    buf.push_back({l, static_cast<int32_t>(i)});
    if (buf.size() == cap) {
      std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), BetterCandidate());
      buf.resize(k);
      threshold = buf[k - 1].logit;
    }
  }
  if (buf.size() > k) {
    std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), BetterCandidate());
    buf.resize(k);
  }
  std::sort(buf.begin(), buf.end(), BetterCandidate());
  return buf;
}

size_t PartitionTopP(std::span<Candidate> cands, std::span<const float> weight_of, double target) {
  if (cands.empty()) return 0;
  // Invariants: [0, lo) ranks above everything after it and weighs `acc` < target;
  // [lo, hi) ranks above [hi, n); the answer lies in [lo + 1, hi].
  size_t lo = 0;
  size_t hi = cands.size();
  double acc = 0.0;
  auto mass = [&](size_t a, size_t b) {
    double s = 0.0;
    for (size_t i = a; i < b; ++i) s += weight_of[cands[i].id];
    return s;
  };
  while (hi - lo > kSortBelow) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(cands.begin() + lo, cands.begin() + mid, cands.begin() + hi, BetterCandidate());
    const double s = mass(lo, mid);
    if (acc + s >= target) {
      hi = mid;
    } else {
      acc += s;
      lo = mid;
    }
  }
  std::sort(cands.begin() + lo, cands.begin() + hi, BetterCandidate());
  for (size_t i = lo; i < hi; ++i) {
    acc += weight_of[cands[i].id];
    if (acc >= target) return i + 1;
  }
  return std::max<size_t>(hi, 1);  // reached only through rounding or target > total
}

std::vector<Candidate> TopPNucleus(std::span<const float> logits, std::span<const float> weights,
                                   double target) {
  std::array<double, kBuckets> mass{};  // [kBuckets] weight per bucket
  for (float w : weights) {
    if (w > 0.0f) mass[BucketOf(w)] += w;
  }
  // Walk buckets from the heaviest weights down to the one where the mass reaches the target.
  double above = 0.0;  // mass of the buckets above `cross`
  size_t cross = kBuckets;
  for (size_t b = kBuckets; b-- > 0;) {
    if (mass[b] == 0.0) continue;
    cross = b;
    if (above + mass[b] >= target) break;
    above += mass[b];
  }
  std::vector<Candidate> nucleus;  // [n] settled buckets, then the crossing bucket's prefix
  std::vector<Candidate> crossing;
  if (cross == kBuckets) return nucleus;  // no positive weight
  for (size_t i = 0; i < weights.size(); ++i) {
    const float w = weights[i];
    if (!(w > 0.0f)) continue;
    const uint32_t b = BucketOf(w);
    if (b > cross) nucleus.push_back({logits[i], static_cast<int32_t>(i)});
    if (b == cross) crossing.push_back({logits[i], static_cast<int32_t>(i)});
  }
  const size_t n = PartitionTopP(crossing, weights, target - above);
  nucleus.insert(nucleus.end(), crossing.begin(), crossing.begin() + n);
  return nucleus;
}

}  // namespace kiln
