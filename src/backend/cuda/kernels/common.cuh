// Shared device helpers for the CUDA kernels: element conversions, 16-byte vector loads,
// warp reductions. Kernels include only this and CUDA headers (never runtime headers).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kernels/kernels.h"

namespace kiln::cuda {

__device__ __forceinline__ float ToF32(float x) { return x; }
__device__ __forceinline__ float ToF32(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToF32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromF32(float x);
template <>
__device__ __forceinline__ float FromF32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half FromF32<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromF32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16 bytes of T: 4 floats or 8 halves.
template <typename T>
struct Vec16 {
  static constexpr int kN = 16 / sizeof(T);
  union {
    uint4 u;
    T e[kN];
  };
};

template <typename T>
__device__ __forceinline__ Vec16<T> Load16(const T* p) {
  Vec16<T> v;
  v.u = *reinterpret_cast<const uint4*>(p);
  return v;
}
// Streaming read that bypasses L1 (weights: read once per step).
template <typename T>
__device__ __forceinline__ Vec16<T> LoadStream16(const T* p) {
  Vec16<T> v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.u.x), "=r"(v.u.y), "=r"(v.u.z), "=r"(v.u.w)
               : "l"(p));
  return v;
}
template <typename T>
__device__ __forceinline__ void Store16(T* p, const Vec16<T>& v) {
  *reinterpret_cast<uint4*>(p) = v.u;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float BlockSum(float v, float* scratch /* [32] */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may be in use by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.0f;
  return WarpSum(t);
}

// Programmatic dependent launch (sm_90): a kernel launched with LaunchPdl may be scheduled while
// its predecessor in the stream is still running; it must call PdlWait() before touching memory
// (waits for the predecessor's completion and memory flush). PdlTrigger() lets the next kernel
// launch early. Both are no-ops for a kernel launched the ordinary way.
__device__ __forceinline__ void PdlWait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void PdlTrigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

template <typename... KArgs, typename... Args>
cudaError_t LaunchPdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}

// The activations of Act, in fp32 (elementwise.cu and the gated GEMV epilogue share them).
__device__ __forceinline__ float ApplyAct(float x, Act a) {
  switch (a) {
    case Act::kSilu: return x / (1.0f + expf(-x));
    case Act::kGeluTanh: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case Act::kGeluErf: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case Act::kRelu: return x > 0.0f ? x : 0.0f;
  }
  return x;
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Dispatch a runtime ElemType to a C++ type.
#define KILN_DISPATCH_FLOAT(ET, T, ...)                 \
  switch (ET) {                                         \
    case ElemType::kF32: {                              \
      using T = float;                                  \
      __VA_ARGS__;                                      \
    } break;                                            \
    case ElemType::kF16: {                              \
      using T = __half;                                 \
      __VA_ARGS__;                                      \
    } break;                                            \
    case ElemType::kBF16: {                             \
      using T = __nv_bfloat16;                          \
      __VA_ARGS__;                                      \
    } break;                                            \
  }

}  // namespace kiln::cuda
