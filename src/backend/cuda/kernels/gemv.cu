// Streaming skinny GEMM (decode): out[m, n] = x[m, k] @ w[n, k]^T (+ bias), m <= 16.
//
// Decode is a pure weight stream, so the kernel is shaped around reading W exactly once at
// full bandwidth: each warp owns R consecutive weight rows and sweeps k with 16-byte
// streaming loads (L1 bypass), U vectors per row in flight per lane; the MT activation rows
// are re-read from L1/L2 (small, shared by every warp of the SM). fp32 accumulation, one warp
// reduction per (row, m) at the end.
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kU = 4;  // vectors per row in flight per lane

template <typename T, int MT, int R>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(T* __restrict__ out, const T* __restrict__ x,
                                                          const T* __restrict__ w, const float* __restrict__ bias,
                                                          int m, int64_t n, int64_t k, bool vec) {
  constexpr int N = Vec16<T>::kN;
  const int lane = threadIdx.x & 31;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= n) return;
  const T* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r) wr[r] = w + (row0 + r < n ? row0 + r : row0) * k;

  float acc[R][MT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[r][i] = 0.0f;

  const int64_t kv = vec ? k / N : 0;  // 16-byte vectors per row
  for (int64_t v0 = lane; v0 < kv; v0 += 32 * kU) {
    Vec16<T> wv[kU][R];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t v = v0 + 32 * u;
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (v < kv) wv[u][r] = LoadStream16(wr[r] + v * N);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t v = v0 + 32 * u;
      if (v < kv) {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          if (i < m) {
            const Vec16<T> xv = Load16(x + i * k + v * N);
#pragma unroll
            for (int e = 0; e < N; ++e) {
              const float xe = ToF32(xv.e[e]);
#pragma unroll
              for (int r = 0; r < R; ++r) acc[r][i] = fmaf(ToF32(wv[u][r].e[e]), xe, acc[r][i]);
            }
          }
        }
      }
    }
  }
  // Elements past the last whole vector (or all of them when rows are not 16-byte aligned).
  for (int64_t j = kv * N + lane; j < k; j += 32) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      if (i < m) {
        const float xe = ToF32(x[i * k + j]);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][i] = fmaf(ToF32(wr[r][j]), xe, acc[r][i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      const float s = WarpSum(acc[r][i]);
      if (lane == ((r * MT + i) & 31) && i < m && row0 + r < n)
        out[i * n + row0 + r] = FromF32<T>(s + (bias ? bias[row0 + r] : 0.0f));
    }
  }
}

template <typename T, int MT, int R>
void Launch(T* out, const T* x, const T* w, const float* bias, int m, int64_t n, int64_t k, bool vec,
            cudaStream_t s) {
  const int64_t rows_per_block = int64_t(kWarps) * R;
  const unsigned blocks = static_cast<unsigned>((n + rows_per_block - 1) / rows_per_block);
  GemvKernel<T, MT, R><<<blocks, kWarps * 32, 0, s>>>(out, x, w, bias, m, n, k, vec);
}

template <typename T>
void Dispatch(T* out, const T* x, const T* w, const float* bias, int m, int64_t n, int64_t k, bool vec,
              cudaStream_t s) {
  if (m <= 1) return Launch<T, 1, 2>(out, x, w, bias, m, n, k, vec, s);
  if (m <= 2) return Launch<T, 2, 2>(out, x, w, bias, m, n, k, vec, s);
  if (m <= 4) return Launch<T, 4, 2>(out, x, w, bias, m, n, k, vec, s);
  if (m <= 8) return Launch<T, 8, 2>(out, x, w, bias, m, n, k, vec, s);
  return Launch<T, 16, 2>(out, x, w, bias, m, n, k, vec, s);
}

}  // namespace

cudaError_t LaunchGemv(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t n, int64_t k,
                       ElemType t, cudaStream_t s) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (m > kGemvMaxM) return cudaErrorInvalidValue;
  const int64_t nv = 16 / ElemBytes(t);
  const bool vec = k % nv == 0 && Aligned16(x) && Aligned16(w);
  KILN_DISPATCH_FLOAT(t, T, Dispatch<T>(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w),
                                        bias, static_cast<int>(m), n, k, vec, s));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
