// Per-head q/k RMSNorm + rotary embedding (all variants) + paged KV-cache write, one pass.
#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWholeTokenRows = 256;  // from this many tokens on, one block per token

// Up to 16 bytes of one lane's elements, register-resident.
template <typename T>
union Lane16 {
  uint4 u;
  T e[16 / sizeof(T)];
  __device__ Lane16() : u(make_uint4(0, 0, 0, 0)) {}
};

// One lane's per_lane contiguous elements (4, 8 or 16 bytes) from / to p.
template <typename T>
__device__ __forceinline__ Lane16<T> LoadLane(const T* p, int lane_bytes) {
  Lane16<T> v;
  if (lane_bytes == 16) {
    v.u = *reinterpret_cast<const uint4*>(p);
  } else if (lane_bytes == 8) {
    const uint2 t = *reinterpret_cast<const uint2*>(p);
    v.u.x = t.x;
    v.u.y = t.y;
  } else {
    v.u.x = *reinterpret_cast<const uint32_t*>(p);
  }
  return v;
}
template <typename T>
__device__ __forceinline__ void StoreLane(T* p, const Lane16<T>& v, int lane_bytes) {
  if (lane_bytes == 16)
    *reinterpret_cast<uint4*>(p) = v.u;
  else if (lane_bytes == 8)
    *reinterpret_cast<uint2*>(p) = make_uint2(v.u.x, v.u.y);
  else
    *reinterpret_cast<uint32_t*>(p) = v.u.x;
}

// Grid (token, group of heads_per_block heads); the block's cos/sin table goes to shared memory,
// then its warps take the group's heads in turn: load into a per-warp f32 buffer, optional
// RMSNorm, rotate the first rotary_dim dims, store to qkv and (K, V) to the cache. Few tokens
// (decode): groups of one head per warp, for parallelism. Many tokens (prefill): one block per
// token, so each token's cos/sin table is computed once instead of once per group of heads.
template <typename T>
__global__ void __launch_bounds__(kThreads) RopeKvKernel(RopeKvArgs a, int heads_per_block) {
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
  const int h_begin = blockIdx.y * heads_per_block;
  const int h_end = min(hq + 2 * hkv, h_begin + heads_per_block);
  // Each lane moves `per_lane` contiguous elements with one vector access when the head is a
  // multiple of 32 elements of 4, 8 or 16 bytes per lane (head_dim 64/128/256); else scalar.
  const int per_lane = hd / 32;
  const int lane_bytes = per_lane * static_cast<int>(sizeof(T));
  const bool vec = hd % 32 == 0 && (lane_bytes == 4 || lane_bytes == 8 || lane_bytes == 16) &&
                   (reinterpret_cast<uintptr_t>(row) % 16) == 0 && (hd * sizeof(T)) % 16 == 0;
  auto load_head = [&](const T* src, float* dst) {
    if (vec) {
      const Lane16<T> v = LoadLane(src + lane * per_lane, lane_bytes);
#pragma unroll
      for (int e = 0; e < static_cast<int>(16 / sizeof(T)); ++e)
        if (e < per_lane) dst[lane * per_lane + e] = ToF32(v.e[e]);
    } else {
      for (int d = lane; d < hd; d += 32) dst[d] = ToF32(src[d]);
    }
  };
  auto store_head = [&](const float* src, T* dst) {
    if (vec) {
      Lane16<T> v;
#pragma unroll
      for (int e = 0; e < static_cast<int>(16 / sizeof(T)); ++e)
        if (e < per_lane) v.e[e] = FromF32<T>(src[lane * per_lane + e]);
      StoreLane(dst + lane * per_lane, v, lane_bytes);
    } else {
      for (int d = lane; d < hd; d += 32) dst[d] = FromF32<T>(src[d]);
    }
  };
  if (vec && a.rotary_dim == hd && heads_per_block > kThreads / 32) {
    // Whole-head rotary over many tokens (prefill), the common case: each lane keeps its
    // per_lane elements in registers (41 -> 34 us per Llama-3-8B layer at 2048 tokens on the H100).
    // Rotate-half pairs element d with d + hd / 2, which sits in lane ^ 16 at the same offset;
    // interleaved pairs are neighbours within a lane. kHeads heads per warp are loaded before
    // any is processed, so their loads are in flight together.
    constexpr int kHeads = 4, kMaxPer = 16 / sizeof(T) < 8 ? 16 / sizeof(T) : 8;
    const int warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int i0 = a.interleaved ? lane * per_lane / 2 : (lane & 15) * per_lane;  // first cos/sin index
    const bool upper = !a.interleaved && lane >= 16;                              // holds the second half of the pairs
    for (int hb = h_begin + warp; hb < h_end; hb += nw * kHeads) {
      Lane16<T> v[kHeads];
#pragma unroll
      for (int u = 0; u < kHeads; ++u) {
        const int h = hb + u * nw;
        if (h < h_end) v[u] = LoadLane(row + static_cast<int64_t>(h) * hd + lane * per_lane, lane_bytes);
      }
#pragma unroll
      for (int u = 0; u < kHeads; ++u) {
        const int h = hb + u * nw;  // warp-uniform
        if (h >= h_end) break;
        if (h >= hq + hkv) {  // V: straight to the cache
          StoreLane(static_cast<T*>(a.v_cache) + (slot * hkv + (h - hq - hkv)) * hd + lane * per_lane, v[u],
                    lane_bytes);
          continue;
        }
        float x[kMaxPer];
#pragma unroll
        for (int e = 0; e < kMaxPer; ++e) x[e] = e < per_lane ? ToF32(v[u].e[e]) : 0.0f;
        const float* nw_ = h < hq ? a.q_norm : a.k_norm;
        if (nw_) {
          float ss = 0.0f;
#pragma unroll
          for (int e = 0; e < kMaxPer; ++e) ss += x[e] * x[e];
          const float inv = 1.0f / sqrtf(WarpSum(ss) / static_cast<float>(hd) + a.eps);
#pragma unroll
          for (int e = 0; e < kMaxPer; ++e)
            if (e < per_lane) x[e] *= inv * nw_[lane * per_lane + e];
        }
        if (a.interleaved) {
#pragma unroll
          for (int e = 0; e + 1 < kMaxPer; e += 2) {
            if (e + 1 < per_lane) {
              const float c = cs[i0 + e / 2], sn_ = sn[i0 + e / 2], x0 = x[e], x1 = x[e + 1];
              x[e] = x0 * c - x1 * sn_;
              x[e + 1] = x1 * c + x0 * sn_;
            }
          }
        } else {
#pragma unroll
          for (int e = 0; e < kMaxPer; ++e) {
            const float p = __shfl_xor_sync(0xffffffffu, x[e], 16);
            if (e < per_lane) x[e] = upper ? x[e] * cs[i0 + e] + p * sn[i0 + e] : x[e] * cs[i0 + e] - p * sn[i0 + e];
          }
        }
        Lane16<T> o;
#pragma unroll
        for (int e = 0; e < kMaxPer; ++e)
          if (e < per_lane) o.e[e] = FromF32<T>(x[e]);
        StoreLane(row + static_cast<int64_t>(h) * hd + lane * per_lane, o, lane_bytes);
        if (h >= hq)
          StoreLane(static_cast<T*>(a.k_cache) + (slot * hkv + (h - hq)) * hd + lane * per_lane, o, lane_bytes);
      }
    }
    return;
  }
  for (int h = h_begin + (threadIdx.x >> 5); h < h_end; h += blockDim.x >> 5) {
    T* head = row + static_cast<int64_t>(h) * hd;
    if (h >= hq + hkv) {  // V: straight to the cache
      T* dst = static_cast<T*>(a.v_cache) + (slot * hkv + (h - hq - hkv)) * hd;
      if (vec) {
        load_head(head, buf);
        __syncwarp();
        store_head(buf, dst);
        __syncwarp();
      } else {
        for (int d = lane; d < hd; d += 32) dst[d] = head[d];
      }
      continue;
    }
    load_head(head, buf);
    __syncwarp();
    const float* nw = h < hq ? a.q_norm : a.k_norm;
    if (nw) {
      float ss = 0.0f;
      for (int d = lane; d < hd; d += 32) ss += buf[d] * buf[d];
      ss = WarpSum(ss);
      const float inv = 1.0f / sqrtf(ss / static_cast<float>(hd) + a.eps);
      __syncwarp();
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
    store_head(buf, head);
    if (h >= hq) store_head(buf, static_cast<T*>(a.k_cache) + (slot * hkv + (h - hq)) * hd);
    __syncwarp();
  }
}

}  // namespace

cudaError_t LaunchRopeWriteKv(const RopeKvArgs& a, ElemType t, cudaStream_t s) {
  if (a.n_tokens <= 0) return cudaSuccess;
  const size_t smem = sizeof(float) * (static_cast<size_t>(a.rotary_dim / 2) * 2 +
                                       static_cast<size_t>(kThreads / 32) * a.head_dim);
  const int heads = a.n_heads + 2 * a.n_kv_heads;
  const int per_block = a.n_tokens >= kWholeTokenRows ? heads : kThreads / 32;
  const dim3 grid(a.n_tokens, (heads + per_block - 1) / per_block);
  KILN_DISPATCH_FLOAT(t, T, LaunchPdl(RopeKvKernel<T>, grid, dim3(kThreads), smem, s, a, per_block));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
