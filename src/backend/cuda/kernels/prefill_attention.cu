// Tensor-core flash attention (FA2-style, mma.sync m16n8k16, fp32 accumulation) over the paged
// KV cache, for f16/bf16 prefill and mixed batches.
//
// Grid: (sequence x query tile of 64, query head). 4 warps; each warp owns 16 query rows.
// Per key tile: Q.K^T from shared memory (ldmatrix), scale / softcap / ALiBi / causal + window
// mask, online softmax in registers, P (re-packed from the S accumulators) . V (ldmatrix.trans).
// Head dims are padded to HD in {64, 128, 256} with zeros. Keys past the sequence are zero-filled
// so that masked probabilities never meet unwritten cache memory.
#include <cfloat>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kBQ = 16 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;

template <typename T>
__device__ __forceinline__ void Mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma<__half>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void Ldsm4(uint32_t* r, const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void Ldsm4T(uint32_t* r, const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

template <typename T>
__device__ __forceinline__ uint32_t Pack2(float lo, float hi) {
  union {
    T h[2];
    uint32_t u;
  } v;
  v.h[0] = FromF32<T>(lo);
  v.h[1] = FromF32<T>(hi);
  return v.u;
}

template <int HD>
struct Cfg {
  static constexpr int kBK = HD >= 256 ? 32 : 64;  // keys per tile
  static constexpr int kLd = HD + 8;               // smem row stride (elements): 16-byte pad
  static constexpr size_t SmemBytes(size_t elem) { return elem * kLd * (kBQ + 2 * kBK); }
};

template <typename T, int HD>
__global__ void __launch_bounds__(kWarps * 32) PrefillKernel(AttnArgs a, int tiles_per_seq) {
  using C = Cfg<HD>;
  constexpr int BK = C::kBK, LD = C::kLd, NT = BK / 8, DT = HD / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [kBQ][LD]
  T* ks = qs + kBQ * LD;                   // [BK][LD]
  T* vs = ks + BK * LD;                    // [BK][LD]

  const int seq = blockIdx.x / tiles_per_seq, tile = blockIdx.x % tiles_per_seq;
  const int q0 = a.q_start[seq], qn = a.q_start[seq + 1] - q0;
  const int r0 = tile * kBQ;
  if (r0 >= qn) return;
  const int rows = min(kBQ, qn - r0);
  const int h = blockIdx.y, hq = a.n_heads, hkv = a.n_kv_heads, hd = a.head_dim, kvh = h / (hq / hkv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t row_stride = static_cast<int64_t>(hq + 2 * hkv) * hd;

  // Q tile -> smem (zero padded).
  const T* qg = static_cast<const T*>(a.qkv) + static_cast<int64_t>(q0 + r0) * row_stride + static_cast<int64_t>(h) * hd;
  for (int i = tid; i < kBQ * (HD / 8); i += kWarps * 32) {
    const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < rows && c < hd) v = *reinterpret_cast<const uint4*>(qg + r * row_stride + c);
    *reinterpret_cast<uint4*>(qs + r * LD + c) = v;
  }

  // This thread's two rows (g and g + 8 of its warp's 16).
  const int g = lane >> 2, tig = lane & 3;
  int pos_r[2], first_r[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = warp * 16 + g + 8 * i;
    pos_r[i] = r < rows ? a.positions[q0 + r0 + r] : -1;
    first_r[i] = a.sliding_window > 0 ? max(0, pos_r[i] - a.sliding_window + 1) : 0;
  }
  const int last_pos = a.positions[q0 + r0 + rows - 1];
  const int first_pos = a.positions[q0 + r0];
  const int kv_lo = a.sliding_window > 0 ? max(0, first_pos - a.sliding_window + 1) : 0;
  const int kv_hi = last_pos + 1;
  const float slope = a.alibi ? a.alibi[h] : 0.0f;

  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);

  float o[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m_r[2] = {-FLT_MAX, -FLT_MAX}, l_r[2] = {0.0f, 0.0f};

  for (int kb = kv_lo; kb < kv_hi; kb += BK) {
    __syncthreads();  // previous tile's K/V fully consumed (and Q stored, first time)
    for (int i = tid; i < BK * (HD / 8); i += kWarps * 32) {
      const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
      const int j = kb + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j < kv_hi && c < hd) {
        const int64_t off = ((static_cast<int64_t>(table[j / bs]) * bs + j % bs) * hkv + kvh) * hd + c;
        kv = *reinterpret_cast<const uint4*>(kc + off);
        vv = *reinterpret_cast<const uint4*>(vc + off);
      }
      *reinterpret_cast<uint4*>(ks + r * LD + c) = kv;
      *reinterpret_cast<uint4*>(vs + r * LD + c) = vv;
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows x BK keys.
    float s[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t qa[4];
      Ldsm4(qa, qs + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        uint32_t kb4[4];
        const int mi = lane >> 3;
        Ldsm4(kb4, ks + (n2 * 16 + (mi >> 1) * 8 + (lane & 7)) * LD + kk * 16 + (mi & 1) * 8);
        Mma<T>(s[2 * n2], qa, kb4[0], kb4[1]);
        Mma<T>(s[2 * n2 + 1], qa, kb4[2], kb4[3]);
      }
    }

    // Scale, softcap, ALiBi, mask; online softmax (base 2).
    float mx[2] = {-FLT_MAX, -FLT_MAX};
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1, j = kb + n * 8 + tig * 2 + (e & 1);
        float v = s[n][e] * a.scale;
        if (a.softcap > 0.0f) v = a.softcap * tanhf(v / a.softcap);
        v += slope * static_cast<float>(j - pos_r[i]);
        v = (j <= pos_r[i] && j >= first_r[i]) ? v * kLog2e : -INFINITY;
        s[n][e] = v;
        mx[i] = fmaxf(mx[i], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m_r[i], mx[i]);
      alpha[i] = exp2f(m_r[i] - m_new);
      m_r[i] = m_new;
    }
    float rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        const float p = exp2f(s[n][e] - m_r[i]);  // -inf -> 0; m_r stays finite (-FLT_MAX at worst)
        s[n][e] = p;
        rs[i] += p;
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l_r[i] = l_r[i] * alpha[i] + rs[i];
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      o[d][0] *= alpha[0];
      o[d][1] *= alpha[0];
      o[d][2] *= alpha[1];
      o[d][3] *= alpha[1];
    }

    // O += P V.
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = Pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = Pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = Pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = Pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int d2 = 0; d2 < DT / 2; ++d2) {
        uint32_t vb[4];
        const int mi = lane >> 3;
        Ldsm4T(vb, vs + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LD + d2 * 16 + (mi >> 1) * 8);
        Mma<T>(o[2 * d2], pa, vb[0], vb[1]);
        Mma<T>(o[2 * d2 + 1], pa, vb[2], vb[3]);
      }
    }
  }

  // Normalise and store.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = l_r[i];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    l_r[i] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = warp * 16 + g + 8 * i;
    if (r >= rows) continue;
    T* orow = out + static_cast<int64_t>(q0 + r0 + r) * hq * hd + static_cast<int64_t>(h) * hd;
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      const int c = d * 8 + tig * 2;
      if (c < hd) {
        const uint32_t v = Pack2<T>(o[d][2 * i] * l_r[i], o[d][2 * i + 1] * l_r[i]);
        *reinterpret_cast<uint32_t*>(orow + c) = v;
      }
    }
  }
}

template <typename T, int HD>
cudaError_t Launch(const AttnArgs& a, cudaStream_t s) {
  const size_t smem = Cfg<HD>::SmemBytes(sizeof(T));
  cudaError_t e = cudaFuncSetAttribute(PrefillKernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const int tiles = (a.max_q_len + kBQ - 1) / kBQ;
  const dim3 grid(a.n_seqs * tiles, a.n_heads);
  PrefillKernel<T, HD><<<grid, kWarps * 32, smem, s>>>(a, tiles);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchT(const AttnArgs& a, cudaStream_t s) {
  if (a.head_dim <= 64) return Launch<T, 64>(a, s);
  if (a.head_dim <= 128) return Launch<T, 128>(a, s);
  return Launch<T, 256>(a, s);
}

}  // namespace

bool PrefillAttentionSupported(const AttnArgs& a, ElemType t) {
  return t != ElemType::kF32 && a.head_dim >= 32 && a.head_dim <= 256 && a.head_dim % 8 == 0 && a.n_kv_heads > 0 &&
         a.n_heads % a.n_kv_heads == 0 && a.n_seqs > 0;
}

cudaError_t LaunchPrefillAttention(const AttnArgs& a, ElemType t, cudaStream_t s) {
  if (a.n_tokens <= 0) return cudaSuccess;
  if (!PrefillAttentionSupported(a, t)) return cudaErrorNotSupported;
  if (t == ElemType::kBF16) return LaunchT<__nv_bfloat16>(a, s);
  return LaunchT<__half>(a, s);
}

}  // namespace kiln::cuda
