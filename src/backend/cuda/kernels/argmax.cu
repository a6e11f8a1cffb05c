// Greedy sampling on the device: the argmax of each logits row, so a greedy step copies
// back one int32 per sequence instead of the whole [n, vocab] logits. Same rule as the host
// sampler (src/sampling): NaN counts as -inf, the lowest id wins ties, all -inf gives 0.
#include <climits>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ bool Better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

// One block per row. Where every row starts on a 16-byte boundary, each thread reads 16 bytes
// at a time (8 bf16 / 4 f32 logits), four loads in flight: a 128,256-entry row is ~31 loads per
// thread instead of ~250 dependent 2-byte ones.
template <typename T>
__global__ void ArgmaxRowsKernel(int32_t* __restrict__ out, const T* __restrict__ logits, int64_t vocab, bool vec) {
  const T* row = logits + blockIdx.x * vocab;
  float best = -INFINITY;
  int best_i = INT_MAX;
  auto consider = [&](float v, int64_t j) {
    if (v != v) v = -INFINITY;  // NaN
    if (Better(v, static_cast<int>(j), best, best_i)) {
      best = v;
      best_i = static_cast<int>(j);
    }
  };
  if (vec) {
    constexpr int N = Vec16<T>::kN;
    const int64_t nv = vocab / N;
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < nv; c += kThreads) {
      const Vec16<T> x = Load16(row + c * N);
#pragma unroll
      for (int e = 0; e < N; ++e) consider(ToF32(x.e[e]), c * N + e);
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += kThreads) consider(ToF32(row[j]), j);
  }
  // Warp reduction, then across warps through shared memory.
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, best, off);
    const int oi = __shfl_down_sync(0xffffffffu, best_i, off);
    if (Better(ov, oi, best, best_i)) {
      best = ov;
      best_i = oi;
    }
  }
  __shared__ float sv[kThreads / 32];
  __shared__ int si[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      if (Better(sv[w], si[w], best, best_i)) {
        best = sv[w];
        best_i = si[w];
      }
    out[blockIdx.x] = best_i == INT_MAX ? 0 : best_i;
  }
}

}  // namespace

cudaError_t LaunchArgmaxRows(int32_t* out, const void* logits, int64_t rows, int64_t vocab, ElemType t,
                             cudaStream_t s) {
  if (rows <= 0) return cudaSuccess;
  if (rows > INT_MAX || vocab <= 0) return cudaErrorInvalidValue;
  const bool vec = reinterpret_cast<uintptr_t>(logits) % 16 == 0 && (vocab * ElemBytes(t)) % 16 == 0;
  KILN_DISPATCH_FLOAT(t, T,
                      ArgmaxRowsKernel<T><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
                          out, static_cast<const T*>(logits), vocab, vec));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
