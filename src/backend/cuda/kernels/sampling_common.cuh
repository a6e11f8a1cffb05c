// Device helpers shared by the sampling chain (sampling.cu) and its split-row passes
// (sampling_split.cu): the host's ranking (higher logit first, lower id on ties, NaN as -inf) and
// the sampling weights.
#pragma once
#include <climits>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda::sampling {

constexpr int kCap = 1024;  // candidates sorted in shared memory
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float Clean(float v) { return v != v ? -INFINITY : (v == 0.0f ? 0.0f : v); }
__device__ __forceinline__ uint32_t Key(float l) {
  const uint32_t u = __float_as_uint(l);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ bool Better(float la, int ia, float lb, int ib) { return la > lb || (la == lb && ia < ib); }

// The worst member of a best-first prefix: (l, id) is in it iff it ranks at or above (l, id).
struct Cut {
  float l = -INFINITY;
  int id = INT_MAX;  // default: everything
  __device__ bool Has(float x, int j) const { return x > l || (x == l && j <= id); }
};

struct Weights {
  float m, t;
  __device__ float W(float l) const {
    if (m == INFINITY) return l == INFINITY ? 1.0f : 0.0f;
    if (l == -INFINITY) return 0.0f;
    return expf(__fdiv_rn(__fsub_rn(l, m), t));
  }
};

}  // namespace kiln::cuda::sampling
