// Element conversion (weight upload) and seeded random fill (dummy-weight engines).
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

template <typename S, typename D>
__global__ void ConvertKernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = FromF32<D>(ToF32(src[i]));
}

__device__ __forceinline__ uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Each thread writes 8 consecutive elements from one 64-bit hash per pair.
template <typename T>
__global__ void RandomKernel(T* __restrict__ dst, int64_t n, uint64_t seed, float scale) {
  const uint64_t key = Mix64(seed);
  for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * 2; i < n;
       i += int64_t(gridDim.x) * blockDim.x * 2) {
    const uint64_t h = Mix64(key ^ static_cast<uint64_t>(i));
    const float u0 = static_cast<float>(static_cast<uint32_t>(h) >> 8) * 0x1.0p-24f;
    const float u1 = static_cast<float>(static_cast<uint32_t>(h >> 32) >> 8) * 0x1.0p-24f;
    dst[i] = FromF32<T>((2.0f * u0 - 1.0f) * scale);
    if (i + 1 < n) dst[i + 1] = FromF32<T>((2.0f * u1 - 1.0f) * scale);
  }
}

int GridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

}  // namespace

cudaError_t LaunchConvert(const void* src, ElemType src_t, void* dst, ElemType dst_t, int64_t n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  if (src_t == dst_t) return cudaMemcpyAsync(dst, src, n * ElemBytes(src_t), cudaMemcpyDeviceToDevice, s);
  KILN_DISPATCH_FLOAT(src_t, S, KILN_DISPATCH_FLOAT(dst_t, D,
      ConvertKernel<S, D><<<GridFor(n, 256), 256, 0, s>>>(static_cast<const S*>(src), static_cast<D*>(dst), n)));
  return cudaGetLastError();
}

cudaError_t LaunchRandomFill(void* dst, ElemType t, int64_t n, uint64_t seed, float scale, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  KILN_DISPATCH_FLOAT(t, T, RandomKernel<T><<<GridFor((n + 1) / 2, 256), 256, 0, s>>>(static_cast<T*>(dst), n, seed, scale));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
