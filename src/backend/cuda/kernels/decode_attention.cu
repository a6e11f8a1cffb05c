// Split-K ("flash-decoding") attention over the paged KV cache.
//
// Grid: (query token, kv head x head chunk, split). The query heads of one GQA group (up to
// kMaxG per block) share every K/V read of the block. Each block scores its slice of key
// positions (one key row per thread, q broadcast from shared memory), takes a block softmax,
// accumulates P.V with (position slot, 16-byte dim chunk) threads, and writes either the final
// output (one split) or unnormalised partials + (max, sum) that CombineKernel merges.
// Works for any query token (also prefill), as the general path.
#include <cfloat>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxG = 8;          // query heads per block
constexpr int kMaxSplitLen = 256; // key positions per block

struct Plan {
  int hchunks, splits, split_len;
};

Plan MakePlan(const AttnArgs& a, int num_sms) {
  Plan p;
  const int g = a.n_heads / a.n_kv_heads;
  p.hchunks = (g + kMaxG - 1) / kMaxG;
  const int64_t base = static_cast<int64_t>(a.n_tokens) * a.n_kv_heads * p.hchunks;
  const int len = a.max_seq_len > 0 ? a.max_seq_len : 1;
  int want = static_cast<int>((2LL * num_sms + base - 1) / base);
  if (want < 1) want = 1;
  int split_len = (len + want - 1) / want;
  split_len = (split_len + 31) / 32 * 32;
  if (split_len < 64) split_len = 64;
  if (split_len > kMaxSplitLen) split_len = kMaxSplitLen;
  p.split_len = split_len;
  p.splits = (len + split_len - 1) / split_len;
  return p;
}

size_t SmemBytes(const AttnArgs& a, ElemType t) {
  const int hd = a.head_dim, nv = static_cast<int>(16 / ElemBytes(t));
  const int nd = hd / nv, slots = kThreads / nd;
  const size_t q = static_cast<size_t>(kMaxG) * hd, sc = static_cast<size_t>(kMaxG) * kMaxSplitLen;
  const size_t red = static_cast<size_t>(slots) * kMaxG * hd;
  return sizeof(float) * (q + sc + red + 2 * kMaxG * (kThreads / 32) + 2 * kMaxG);
}

__device__ __forceinline__ int SeqOf(const int32_t* q_start, int n_seqs, int t) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (q_start[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) SplitKernel(AttnArgs a, Plan plan, float* __restrict__ part_o,
                                                        float* __restrict__ part_ml) {
  PdlWait();
  PdlTrigger();
  constexpr int N = Vec16<T>::kN;
  extern __shared__ float smem[];
  const int hd = a.head_dim, hq = a.n_heads, hkv = a.n_kv_heads, G = hq / hkv;
  const int t = blockIdx.x, kvh = blockIdx.y / plan.hchunks, chunk = blockIdx.y % plan.hchunks;
  const int split = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h0 = kvh * G + chunk * kMaxG;
  const int ng = min(kMaxG, (kvh + 1) * G - h0);

  float* qs = smem;                              // [kMaxG][hd]
  float* sc = qs + kMaxG * hd;                   // [kMaxG][kMaxSplitLen]
  float* red = sc + kMaxG * kMaxSplitLen;        // [slots][kMaxG][hd]
  const int nd = hd / N, slots = kThreads / nd;
  float* wred = red + slots * kMaxG * hd;        // [2][kThreads/32][kMaxG]
  float* stat = wred + 2 * kMaxG * (kThreads / 32);  // [2][kMaxG]: max, sum

  const int seq = SeqOf(a.q_start, a.n_seqs, t);
  const int last = a.positions[t];
  const int first = a.sliding_window > 0 ? max(0, last - a.sliding_window + 1) : 0;
  const int jb = first + split * plan.split_len;
  const int je = min(jb + plan.split_len, last + 1);
  const int64_t out_base = static_cast<int64_t>(t) * hq + h0;  // (token, head) index of head g = 0

  if (jb >= je) {  // this split has no keys for this token
    if (plan.splits > 1) {
      for (int i = tid; i < ng * hd; i += kThreads)
        part_o[((out_base + i / hd) * plan.splits + split) * hd + i % hd] = 0.0f;
      if (tid < ng) {
        part_ml[((out_base + tid) * plan.splits + split) * 2 + 0] = -FLT_MAX;
        part_ml[((out_base + tid) * plan.splits + split) * 2 + 1] = 0.0f;
      }
    }
    return;
  }

  const int row_stride = (hq + 2 * hkv) * hd;
  const T* q = static_cast<const T*>(a.qkv) + static_cast<int64_t>(t) * row_stride + static_cast<int64_t>(h0) * hd;
  for (int i = tid; i < ng * hd; i += kThreads) qs[i] = ToF32(q[i]);
  __syncthreads();

  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  auto row_of = [&](int j) -> int64_t {
    return ((static_cast<int64_t>(table[j / bs]) * bs + j % bs) * hkv + kvh) * hd;
  };

  // Pass 1: scores, one key per thread.
  float mx[kMaxG];
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) mx[g] = -FLT_MAX;
  for (int j = jb + tid; j < je; j += kThreads) {
    const T* kp = kc + row_of(j);
    float s[kMaxG];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) s[g] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < hd; d += N) {
      const Vec16<T> kv = Load16(kp + d);
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const float ke = ToF32(kv.e[e]);
#pragma unroll
        for (int g = 0; g < kMaxG; ++g)
          if (g < ng) s[g] = fmaf(qs[g * hd + d + e], ke, s[g]);
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      if (g < ng) {
        float v = s[g] * a.scale;
        if (a.softcap > 0.0f) v = a.softcap * tanhf(v / a.softcap);
        if (a.alibi) v += a.alibi[h0 + g] * static_cast<float>(j - last);
        sc[g * kMaxSplitLen + (j - jb)] = v;
        mx[g] = fmaxf(mx[g], v);
      }
    }
  }
  // Block max per head.
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
    const float m = WarpMax(mx[g]);
    if (lane == 0) wred[warp * kMaxG + g] = m;
  }
  __syncthreads();
  if (tid < kMaxG) {
    float m = -FLT_MAX;
    for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, wred[w * kMaxG + tid]);
    stat[tid] = m;
  }
  __syncthreads();
  float sum[kMaxG];
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) sum[g] = 0.0f;
  for (int j = jb + tid; j < je; j += kThreads) {
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
      if (g < ng) {
        const float p = expf(sc[g * kMaxSplitLen + (j - jb)] - stat[g]);
        sc[g * kMaxSplitLen + (j - jb)] = p;
        sum[g] += p;
      }
    }
  }
  float* wsum = wred + kMaxG * (kThreads / 32);
#pragma unroll
  for (int g = 0; g < kMaxG; ++g) {
    const float v = WarpSum(sum[g]);
    if (lane == 0) wsum[warp * kMaxG + g] = v;
  }
  __syncthreads();
  if (tid < kMaxG) {
    float v = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) v += wsum[w * kMaxG + tid];
    stat[kMaxG + tid] = v;
  }

  // Pass 2: P.V with (slot, dim chunk) threads.
  const int slot = tid / nd, dc = (tid % nd) * N;
  float acc[kMaxG][N];
#pragma unroll
  for (int g = 0; g < kMaxG; ++g)
#pragma unroll
    for (int e = 0; e < N; ++e) acc[g][e] = 0.0f;
  if (slot < slots) {
    constexpr int kV = 4;  // V rows in flight per thread
    for (int j0 = jb + slot; j0 < je; j0 += kV * slots) {
      Vec16<T> vv[kV];
#pragma unroll
      for (int q = 0; q < kV; ++q) {
        const int j = j0 + q * slots;
        if (j < je) vv[q] = Load16(vc + row_of(j) + dc);
      }
#pragma unroll
      for (int q = 0; q < kV; ++q) {
        const int j = j0 + q * slots;
        if (j >= je) break;
#pragma unroll
        for (int g = 0; g < kMaxG; ++g) {
          if (g < ng) {
            const float p = sc[g * kMaxSplitLen + (j - jb)];
#pragma unroll
            for (int e = 0; e < N; ++e) acc[g][e] = fmaf(p, ToF32(vv[q].e[e]), acc[g][e]);
          }
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxG; ++g)
#pragma unroll
      for (int e = 0; e < N; ++e) red[(slot * kMaxG + g) * hd + dc + e] = acc[g][e];
  }
  __syncthreads();
  for (int i = tid; i < ng * hd; i += kThreads) {
    const int g = i / hd, d = i % hd;
    float v = 0.0f;
    for (int sl = 0; sl < slots; ++sl) v += red[(sl * kMaxG + g) * hd + d];
    if (plan.splits == 1) {
      T* o = static_cast<T*>(a.out) + (out_base + g) * hd + d;
      *o = FromF32<T>(v / stat[kMaxG + g]);
    } else {
      part_o[((out_base + g) * plan.splits + split) * hd + d] = v;
    }
  }
  if (plan.splits > 1 && tid < ng) {
    part_ml[((out_base + tid) * plan.splits + split) * 2 + 0] = stat[tid];
    part_ml[((out_base + tid) * plan.splits + split) * 2 + 1] = stat[kMaxG + tid];
  }
}

// out[t, h, :] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s
template <typename T>
__global__ void CombineKernel(T* __restrict__ out, const float* __restrict__ part_o, const float* __restrict__ part_ml,
                              int splits, int hd) {
  PdlWait();
  PdlTrigger();
  const int64_t th = blockIdx.x;  // token * hq + head
  const float* ml = part_ml + th * splits * 2;
  float m = -FLT_MAX;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, ml[2 * s]);
  float l = 0.0f;
  for (int s = 0; s < splits; ++s) l += expf(ml[2 * s] - m) * ml[2 * s + 1];
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += expf(ml[2 * s] - m) * part_o[(th * splits + s) * hd + d];
    out[th * hd + d] = FromF32<T>(v / l);
  }
}

}  // namespace

size_t DecodeAttentionWorkspaceBytes(const AttnArgs& a, int num_sms) {
  if (a.n_tokens <= 0 || a.n_kv_heads <= 0) return 0;
  const Plan p = MakePlan(a, num_sms);
  if (p.splits <= 1) return 0;
  const size_t th = static_cast<size_t>(a.n_tokens) * a.n_heads * p.splits;
  return sizeof(float) * th * (a.head_dim + 2) + 256;
}

cudaError_t LaunchDecodeAttention(const AttnArgs& a, ElemType t, void* workspace, int num_sms, cudaStream_t s) {
  if (a.n_tokens <= 0) return cudaSuccess;
  const int nv = static_cast<int>(16 / ElemBytes(t));
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim % nv != 0 || a.head_dim / nv > kThreads)
    return cudaErrorInvalidValue;
  const Plan p = MakePlan(a, num_sms);
  float* part_o = static_cast<float*>(workspace);
  float* part_ml = p.splits > 1 ? part_o + static_cast<size_t>(a.n_tokens) * a.n_heads * p.splits * a.head_dim
                                : nullptr;
  if (p.splits > 1 && !workspace) return cudaErrorInvalidValue;
  const size_t smem = SmemBytes(a, t);
  const dim3 grid(a.n_tokens, a.n_kv_heads * p.hchunks, p.splits);
  KILN_DISPATCH_FLOAT(t, T, {
    static bool configured = false;
    if (!configured) {
      cudaFuncSetAttribute(SplitKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024);
      configured = true;
    }
    LaunchPdl(SplitKernel<T>, grid, dim3(kThreads), smem, s, a, p, part_o, part_ml);
    if (p.splits > 1)
      LaunchPdl(CombineKernel<T>, dim3(a.n_tokens * a.n_heads), dim3(128), 0, s, static_cast<T*>(a.out),
                static_cast<const float*>(part_o), static_cast<const float*>(part_ml), p.splits, a.head_dim);
  });
  return cudaGetLastError();
}

}  // namespace kiln::cuda
