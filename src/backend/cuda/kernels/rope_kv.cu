// Per-head q/k RMSNorm + rotary embedding (all variants) + paged KV-cache write, one pass.
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kThreads = 128;

// Grid (token, group of 4 heads); the block's cos/sin table goes to shared memory, then each
// warp takes one head: load into a per-warp f32 buffer,
// optional RMSNorm, rotate the first rotary_dim dims, store to qkv and (K, V) to the cache.
template <typename T>
__global__ void __launch_bounds__(kThreads) RopeKvKernel(RopeKvArgs a) {
  PdlWait();
  PdlTrigger();
  extern __shared__ float smem[];
  const int hd = a.head_dim, half = a.rotary_dim / 2;
  float* cs = smem;                 // [half]
  float* sn = smem + half;          // [half]
  float* buf = smem + 2 * half + (threadIdx.x >> 5) * hd;  // [hd] per warp
  const int t = blockIdx.x, lane = threadIdx.x & 31;
  const int pos = a.positions[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // The angle in double (as the CPU reference), reduced to [-pi, pi) in double, then a
    // float sincos: ~1e-7 absolute error at any position, without double sincos's cost.
    const double ang = static_cast<double>(pos) * static_cast<double>(a.inv_freq[i]);
    const double two_pi = 6.283185307179586;
    const float r = static_cast<float>(ang - two_pi * floor(ang / two_pi + 0.5));
    float s, c;
    sincosf(r, &s, &c);
    cs[i] = c * a.attention_factor;
    sn[i] = s * a.attention_factor;
  }
  __syncthreads();
  const int hq = a.n_heads, hkv = a.n_kv_heads;
  T* row = static_cast<T*>(a.qkv) + static_cast<int64_t>(t) * (hq + 2 * hkv) * hd;
  const int64_t slot = a.slots[t];
  // blockIdx.y picks a group of kThreads / 32 heads, one per warp.
  const int h_begin = blockIdx.y * (kThreads / 32);
  const int h_end = min(hq + 2 * hkv, h_begin + kThreads / 32);
  for (int h = h_begin + (threadIdx.x >> 5); h < h_end; h += blockDim.x >> 5) {
    T* head = row + static_cast<int64_t>(h) * hd;
    if (h >= hq + hkv) {  // V: straight to the cache
      T* dst = static_cast<T*>(a.v_cache) + (slot * hkv + (h - hq - hkv)) * hd;
      for (int d = lane; d < hd; d += 32) dst[d] = head[d];
      continue;
    }
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32) {
      const float v = ToF32(head[d]);
      buf[d] = v;
      ss += v * v;
    }
    const float* nw = h < hq ? a.q_norm : a.k_norm;
    if (nw) {
      ss = WarpSum(ss);
      const float inv = 1.0f / sqrtf(ss / static_cast<float>(hd) + a.eps);
      for (int d = lane; d < hd; d += 32) buf[d] = buf[d] * inv * nw[d];
    }
    __syncwarp();
    for (int i = lane; i < half; i += 32) {
      const int ia = a.interleaved ? 2 * i : i;
      const int ib = a.interleaved ? 2 * i + 1 : i + half;
      const float x0 = buf[ia], x1 = buf[ib];
      buf[ia] = x0 * cs[i] - x1 * sn[i];
      buf[ib] = x1 * cs[i] + x0 * sn[i];
    }
    __syncwarp();
    T* kdst = h >= hq ? static_cast<T*>(a.k_cache) + (slot * hkv + (h - hq)) * hd : nullptr;
    for (int d = lane; d < hd; d += 32) {
      const T v = FromF32<T>(buf[d]);
      head[d] = v;
      if (kdst) kdst[d] = v;
    }
    __syncwarp();
  }
}

}  // namespace

cudaError_t LaunchRopeWriteKv(const RopeKvArgs& a, ElemType t, cudaStream_t s) {
  if (a.n_tokens <= 0) return cudaSuccess;
  const size_t smem = sizeof(float) * (static_cast<size_t>(a.rotary_dim / 2) * 2 +
                                       static_cast<size_t>(kThreads / 32) * a.head_dim);
  const dim3 grid(a.n_tokens, (a.n_heads + 2 * a.n_kv_heads + kThreads / 32 - 1) / (kThreads / 32));
  KILN_DISPATCH_FLOAT(t, T, LaunchPdl(RopeKvKernel<T>, grid, dim3(kThreads), smem, s, a));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
