// RMSNorm / LayerNorm over rows, optionally fused with the residual add (x += delta first).
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

// One block per row. The residual (x after the add) is rounded to T and written back first;
// the statistics are taken over the rounded values so that out == norm(stored residual).
template <typename T>
__global__ void NormKernel(T* __restrict__ out, T* x, const T* __restrict__ delta, const float* __restrict__ w,
                           const float* __restrict__ b, int64_t cols, float eps, bool rms, bool unit_offset) {
  PdlWait();
  PdlTrigger();
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  T* xr = x + r * cols;
  T* orow = out + r * cols;
  float sum = 0.0f, sumsq = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float v;
    if (delta) {
      const T stored = FromF32<T>(ToF32(xr[j]) + ToF32(delta[r * cols + j]));
      xr[j] = stored;
      v = ToF32(stored);
    } else {
      v = ToF32(xr[j]);
    }
    sum += v;
    sumsq += v * v;
  }
  float mean = 0.0f, var;
  if (rms) {
    var = BlockSum(sumsq, scratch) / static_cast<float>(cols);
  } else {
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
    float c2 = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float c = ToF32(xr[j]) - mean;
      c2 += c * c;
    }
    var = BlockSum(c2, scratch) / static_cast<float>(cols);
  }
  const float inv = 1.0f / sqrtf(var + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float g = w ? (unit_offset ? 1.0f + w[j] : w[j]) : 1.0f;  // no w: unit weight
    float v = (ToF32(xr[j]) - mean) * inv * g;
    if (b) v += b[j];
    orow[j] = FromF32<T>(v);
  }
}

// Fast path: the row lives in registers (16-byte vectors, up to kMaxV per thread), one read of
// x (and delta), one block reduction (two for LayerNorm), one write.
constexpr int kRegThreads = 256, kMaxV = 4;

template <typename T>
__global__ void __launch_bounds__(kRegThreads) NormRegKernel(T* __restrict__ out, T* x, const T* __restrict__ delta,
                                                             const float* __restrict__ w,
                                                             const float* __restrict__ b, int cols, float eps,
                                                             bool rms, bool unit_offset) {
  PdlWait();
  PdlTrigger();
  constexpr int N = Vec16<T>::kN;
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  T* xr = x + r * cols;
  const int nv = cols / N;
  float v[kMaxV][N];
  float sum = 0.0f, sumsq = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxV; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nv) {
      Vec16<T> xv = Load16(xr + c * N);
      if (delta) {
        const Vec16<T> dv = Load16(delta + r * cols + c * N);
#pragma unroll
        for (int e = 0; e < N; ++e) xv.e[e] = FromF32<T>(ToF32(xv.e[e]) + ToF32(dv.e[e]));
        Store16(xr + c * N, xv);
      }
#pragma unroll
      for (int e = 0; e < N; ++e) {
        v[i][e] = ToF32(xv.e[e]);
        sum += v[i][e];
        sumsq += v[i][e] * v[i][e];
      }
    }
  }
  float mean = 0.0f, var;
  if (rms) {
    var = BlockSum(sumsq, scratch) / static_cast<float>(cols);
  } else {
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
    float c2 = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxV; ++i) {
      if (threadIdx.x + i * blockDim.x < nv) {
#pragma unroll
        for (int e = 0; e < N; ++e) c2 += (v[i][e] - mean) * (v[i][e] - mean);
      }
    }
    var = BlockSum(c2, scratch) / static_cast<float>(cols);
  }
  const float inv = 1.0f / sqrtf(var + eps);
  T* orow = out + r * cols;
#pragma unroll
  for (int i = 0; i < kMaxV; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nv) {
      Vec16<T> o;
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const int j = c * N + e;
        const float g = w ? (unit_offset ? 1.0f + w[j] : w[j]) : 1.0f;  // no w: unit weight
        float y = (v[i][e] - mean) * inv * g;
        if (b) y += b[j];
        o.e[e] = FromF32<T>(y);
      }
      Store16(orow + c * N, o);
    }
  }
}

}  // namespace

cudaError_t LaunchNorm(void* out, void* x, const void* delta, const float* w, const float* b, int64_t rows,
                       int64_t cols, float eps, bool rms, bool unit_offset, ElemType t, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const int64_t n_vec = 16 / ElemBytes(t), nv = cols / n_vec;
  if (cols % n_vec == 0 && nv <= int64_t(kRegThreads) * kMaxV && Aligned16(out) && Aligned16(x) &&
      (!delta || Aligned16(delta))) {
    const int threads = nv >= kRegThreads ? kRegThreads : static_cast<int>((nv + 31) / 32 * 32);
    KILN_DISPATCH_FLOAT(t, T,
        LaunchPdl(NormRegKernel<T>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, s, static_cast<T*>(out),
                  static_cast<T*>(x), static_cast<const T*>(delta), w, b, static_cast<int>(cols), eps, rms,
                  unit_offset));
    return cudaGetLastError();
  }
  const int threads = cols >= 2048 ? 512 : (cols >= 512 ? 256 : 128);
  KILN_DISPATCH_FLOAT(t, T,
      LaunchPdl(NormKernel<T>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, s, static_cast<T*>(out),
                static_cast<T*>(x), static_cast<const T*>(delta), w, b, cols, eps, rms, unit_offset));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
