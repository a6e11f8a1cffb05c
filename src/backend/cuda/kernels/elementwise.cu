// Elementwise ops: gated activations, in-place activations, add, softcap, bias add.
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

int GridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

#define KILN_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <typename T>
__global__ void GatedActKernel(T* __restrict__ out, const T* __restrict__ gu, int64_t rows, int64_t f, Act act) {
  KILN_GRID_STRIDE(i, rows * f) {
    const int64_t r = i / f, j = i - r * f;
    const T* g = gu + r * 2 * f;
    out[i] = FromF32<T>(ApplyAct(ToF32(g[j]), act) * ToF32(g[f + j]));
  }
}

// 16-byte vectors: f % N == 0 and aligned pointers.
template <typename T>
__global__ void GatedActVecKernel(T* __restrict__ out, const T* __restrict__ gu, int64_t rows, int64_t f, Act act) {
  PdlWait();
  PdlTrigger();
  constexpr int N = Vec16<T>::kN;
  const int64_t fv = f / N;
  KILN_GRID_STRIDE(i, rows * fv) {
    const int64_t r = i / fv, j = (i - r * fv) * N;
    const T* g = gu + r * 2 * f;
    const Vec16<T> a = Load16(g + j), u = Load16(g + f + j);
    Vec16<T> o;
#pragma unroll
    for (int e = 0; e < N; ++e) o.e[e] = FromF32<T>(ApplyAct(ToF32(a.e[e]), act) * ToF32(u.e[e]));
    Store16(out + r * f + j, o);
  }
}

template <typename T>
__global__ void ActKernel(T* x, int64_t n, Act act) {
  KILN_GRID_STRIDE(i, n) x[i] = FromF32<T>(ApplyAct(ToF32(x[i]), act));
}

template <typename T>
__global__ void AddKernel(T* out, const T* a, const T* b, int64_t n) {
  KILN_GRID_STRIDE(i, n) out[i] = FromF32<T>(ToF32(a[i]) + ToF32(b[i]));
}

template <typename T>
__global__ void SoftcapKernel(T* x, int64_t n, float cap) {
  KILN_GRID_STRIDE(i, n) x[i] = FromF32<T>(cap * tanhf(ToF32(x[i]) / cap));
}

template <typename T>
__global__ void BiasKernel(T* out, const float* __restrict__ bias, int64_t rows, int64_t cols) {
  KILN_GRID_STRIDE(i, rows * cols) out[i] = FromF32<T>(ToF32(out[i]) + bias[i % cols]);
}

template <typename T>
__global__ void ScaleColumnsKernel(T* w, const float* __restrict__ scale, int64_t rows, int64_t cols) {
  KILN_GRID_STRIDE(i, rows * cols) w[i] = FromF32<T>(ToF32(w[i]) * scale[i % cols]);
}

}  // namespace

cudaError_t LaunchGatedAct(void* out, const void* gate_up, int64_t rows, int64_t f, Act act, ElemType t,
                           cudaStream_t s) {
  if (rows <= 0 || f <= 0) return cudaSuccess;
  const int64_t n_vec = 16 / ElemBytes(t);
  const bool vec = f % n_vec == 0 && Aligned16(out) && Aligned16(gate_up);
  KILN_DISPATCH_FLOAT(t, T,
      if (vec) {
        LaunchPdl(GatedActVecKernel<T>, dim3(GridFor(rows * f / n_vec, 256)), dim3(256), 0, s, static_cast<T*>(out),
                  static_cast<const T*>(gate_up), rows, f, act);
      } else {
        GatedActKernel<T><<<GridFor(rows * f, 256), 256, 0, s>>>(static_cast<T*>(out),
            static_cast<const T*>(gate_up), rows, f, act);
      });
  return cudaGetLastError();
}

cudaError_t LaunchActInPlace(void* x, int64_t n, Act act, ElemType t, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, ActKernel<T><<<GridFor(n, 256), 256, 0, s>>>(static_cast<T*>(x), n, act));
  return cudaGetLastError();
}

cudaError_t LaunchAdd(void* out, const void* a, const void* b, int64_t n, ElemType t, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, AddKernel<T><<<GridFor(n, 256), 256, 0, s>>>(static_cast<T*>(out),
      static_cast<const T*>(a), static_cast<const T*>(b), n));
  return cudaGetLastError();
}

cudaError_t LaunchSoftcap(void* x, int64_t n, float cap, ElemType t, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, SoftcapKernel<T><<<GridFor(n, 256), 256, 0, s>>>(static_cast<T*>(x), n, cap));
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(void* out, const float* bias, int64_t rows, int64_t cols, ElemType t, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, BiasKernel<T><<<GridFor(rows * cols, 256), 256, 0, s>>>(static_cast<T*>(out), bias,
      rows, cols));
  return cudaGetLastError();
}

cudaError_t LaunchScaleColumns(void* w, const float* scale, int64_t rows, int64_t cols, ElemType t, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, ScaleColumnsKernel<T><<<GridFor(rows * cols, 256), 256, 0, s>>>(static_cast<T*>(w), scale,
      rows, cols));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
