// Row gather: embedding lookup (with scale) and GatherRows.
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

// One block per output row; 16-byte vectors when rows are aligned, else elements.
template <typename T>
__global__ void GatherKernel(T* __restrict__ out, const T* __restrict__ src, const int32_t* __restrict__ idx,
                             int64_t d, float scale, bool vec) {
  PdlWait();
  PdlTrigger();
  const int64_t r = blockIdx.x;
  const T* s = src + static_cast<int64_t>(idx[r]) * d;
  T* o = out + r * d;
  if (vec) {
    constexpr int N = Vec16<T>::kN;
    for (int64_t j = threadIdx.x * N; j < d; j += int64_t(blockDim.x) * N) {
      Vec16<T> v = Load16(s + j);
      if (scale != 1.0f) {
#pragma unroll
        for (int e = 0; e < N; ++e) v.e[e] = FromF32<T>(ToF32(v.e[e]) * scale);
      }
      Store16(o + j, v);
    }
  } else {
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) o[j] = FromF32<T>(ToF32(s[j]) * scale);
  }
}

}  // namespace

cudaError_t LaunchGatherRows(void* out, const void* src, const int32_t* idx, int64_t n_rows, int64_t d, float scale,
                             ElemType t, cudaStream_t s) {
  if (n_rows <= 0 || d <= 0) return cudaSuccess;
  const int64_t vec_elems = 16 / ElemBytes(t);
  const bool vec = d % vec_elems == 0 && Aligned16(out) && Aligned16(src);
  const int threads = 128;
  KILN_DISPATCH_FLOAT(t, T,
      LaunchPdl(GatherKernel<T>, dim3(static_cast<unsigned>(n_rows)), dim3(threads), 0, s, static_cast<T*>(out),
                static_cast<const T*>(src), idx, d, scale, vec));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
