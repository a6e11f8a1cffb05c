// Tensor-core flash attention (FA2-style, mma.sync m16n8k16, fp32 accumulation) over the paged
// KV cache, for f16/bf16 prefill and mixed batches.
//
// One block per (query tile of kBQ = NW * 16 * WM rows of one sequence, query head); the 1-D grid
// runs heads fastest (the heads of one GQA group share K/V through L2) and query tiles from the
// last (longest under causal masking) to the first, so that long blocks start first.
// NW warps; each warp owns WM m-tiles of 16 query rows. K/V tiles of BK keys are gathered from
// the paged cache with cp.async into ST shared-memory stages (one barrier per tile; tile t + ST - 1
// loads while tile t computes; the block-table reads run one tile further ahead). Q.K^T from
// ldmatrix fragments (Q held in registers where the budget allows), online softmax in registers
// in base 2 (the scale folded into log2 e; O rescaled only when a row maximum moved), P kept in
// registers as the A operand of P . V (ldmatrix.trans for V). Tiles a warp cannot see under the
// causal / window mask are skipped; only tiles that straddle the mask edge are masked.
// Head dims are padded to HD in {64, 128, 256} with zeros. Keys past the block's last position
// are zero-filled so that masked probabilities never meet unwritten cache memory.
#include <cfloat>
#include <cstdlib>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;  // finite "minus infinity" for running maxima (times log2 e stays finite)

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

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ float Exp2(float x) {  // ex2.approx: exp2(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
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

// HD: padded head dim; NW warps of WM m-tiles (16 rows) each; MINB blocks per SM (register cap);
// BK keys per tile; ST shared-memory stages of K and V; QREG: Q fragments live in registers.
template <int HD_, int NW_, int WM_, int MINB_, int BK_, int ST_, bool QREG_>
struct Cfg {
  static constexpr int HD = HD_, NW = NW_, WM = WM_, MINB = MINB_, BK = BK_, ST = ST_;
  static constexpr bool QREG = QREG_;
  static constexpr int kThreads = NW * 32;
  static constexpr int kBQ = NW * 16 * WM;  // query rows per block
  static constexpr int kLd = HD + 8;        // smem row stride (elements): 16-byte pad
  static constexpr size_t SmemBytes(size_t elem) { return elem * kLd * (kBQ + 2 * ST * BK); }
};

template <typename T, typename C>
__global__ void __launch_bounds__(C::kThreads, C::MINB) PrefillKernel(const AttnArgs a, const int tiles_per_seq) {
  constexpr int HD = C::HD, WM = C::WM, BQ = C::kBQ, BK = C::BK, LD = C::kLd, NTH = C::kThreads, ST = C::ST;
  constexpr int NT = BK / 8, DT = HD / 8, KT = HD / 16;
  constexpr int CPR = HD / 8;     // 16-byte chunks per row
  constexpr int RPP = NTH / CPR;  // rows per load pass
  static_assert(NTH % CPR == 0 && BK % RPP == 0 && BQ % RPP == 0, "load mapping");
  static_assert(ST >= 2, "stages");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [BQ][LD]
  T* ks = qs + BQ * LD;                    // [ST][BK][LD]
  T* vs = ks + ST * BK * LD;               // [ST][BK][LD]

  const int hq = a.n_heads, hkv = a.n_kv_heads, hd = a.head_dim;
  int lin = blockIdx.x;
  const int h = lin % hq;
  lin /= hq;
  const int seq = lin % a.n_seqs;
  const int tile = tiles_per_seq - 1 - lin / a.n_seqs;
  const int q0 = a.q_start[seq], qn = a.q_start[seq + 1] - q0;
  const int r0 = tile * BQ;
  if (r0 >= qn) return;
  const int rows = min(BQ, qn - r0);
  const int kvh = h / (hq / hkv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tig = lane & 3;
  const int64_t row_stride = static_cast<int64_t>(hq + 2 * hkv) * hd;
  const int32_t* pos_g = a.positions + q0 + r0;
  const int win = a.sliding_window;
  const int kv_lo = win > 0 ? max(0, pos_g[0] - win + 1) : 0;
  const int kv_hi = pos_g[rows - 1] + 1;  // positions rise within a sequence's chunk
  const int n_tiles = (kv_hi - kv_lo + BK - 1) / BK;

  // This thread's 16-byte column and first row in every tile load.
  const int lc = (tid % CPR) * 8, lr = tid / CPR;
  const bool col_ok = lc < hd;
  const uint4 zero = make_uint4(0, 0, 0, 0);

  // Q tile -> smem (zero padded); it travels in the first cp.async group with K(0).
  {
    const T* qg =
        static_cast<const T*>(a.qkv) + static_cast<int64_t>(q0 + r0) * row_stride + static_cast<int64_t>(h) * hd + lc;
#pragma unroll
    for (int it = 0; it < BQ / RPP; ++it) {
      const int r = lr + it * RPP;
      T* d = qs + r * LD + lc;
      if (r < rows && col_ok) {
        CpAsync16(d, qg + r * row_stride);
      } else {
        *reinterpret_cast<uint4*>(d) = zero;
      }
    }
  }
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const T* kc = static_cast<const T*>(a.k_cache) + static_cast<int64_t>(kvh) * hd + lc;
  const T* vc = static_cast<const T*>(a.v_cache) + static_cast<int64_t>(kvh) * hd + lc;
  // Cache row (slot * hkv, int32: caches below 2^31 slot-heads) of each key this thread loads, one
  // tile ahead so that the block-table reads are off the critical path; -1: past the block's keys
  // (zero-filled).
  constexpr int LIT = BK / RPP;
  auto rows_of = [&](int kb, int* cr) {
#pragma unroll
    for (int it = 0; it < LIT; ++it) {
      const int j = kb + lr + it * RPP;
      cr[it] = j < kv_hi && col_ok ? (table[j / bs] * bs + j % bs) * hkv : -1;
    }
  };
  auto load_tile = [&](T* dst, const T* cache, const int* cr) {
#pragma unroll
    for (int it = 0; it < LIT; ++it) {
      T* d = dst + (lr + it * RPP) * LD + lc;
      if (cr[it] >= 0) {
        CpAsync16(d, cache + static_cast<int64_t>(cr[it]) * hd);
      } else {
        *reinterpret_cast<uint4*>(d) = zero;
      }
    }
  };
  // Prologue: tiles 0 .. ST-2, one cp.async group each (Q travels with tile 0).
  int cr[LIT];
  rows_of(kv_lo, cr);
#pragma unroll
  for (int p = 0; p < ST - 1; ++p) {
    if (p < n_tiles) {
      load_tile(ks + p * BK * LD, kc, cr);
      load_tile(vs + p * BK * LD, vc, cr);
    }
    CpAsyncCommit();
    rows_of(kv_lo + (p + 1) * BK, cr);  // rows of the next tile to issue
  }

  // This warp's rows [wr0, wr0 + 16 WM) and the positions that bound what it can see.
  const int wr0 = warp * 16 * WM;
  const bool w_live = wr0 < rows;
  const bool w_pad = wr0 + 16 * WM > rows;
  const int w_pos_first = w_live ? pos_g[wr0] : 0;
  const int w_pos_last = w_live ? pos_g[min(wr0 + 16 * WM, rows) - 1] : -1;
  const int w_lo_first = win > 0 ? max(0, w_pos_first - win + 1) : 0;  // smallest window start
  const int w_lo_last = win > 0 ? max(0, w_pos_last - win + 1) : 0;    // largest window start

  // This thread's rows: g and g + 8 of each of its warp's m-tiles.
  int pos_r[WM][2], first_r[WM][2];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = wr0 + mt * 16 + g + 8 * i;
      pos_r[mt][i] = r < rows ? pos_g[r] : -1;
      first_r[mt][i] = win > 0 ? max(0, pos_r[mt][i] - win + 1) : 0;
    }
  const bool plain = a.softcap <= 0.0f && a.alibi == nullptr;
  const float sl = plain ? a.scale * kLog2e : kLog2e;  // scores -> base-2 logits
  const float slope = a.alibi ? a.alibi[h] : 0.0f;

  uint32_t qf[C::QREG ? WM : 1][C::QREG ? KT : 1][4];
  float o[WM][DT][4];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int d = 0; d < DT; ++d) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
  float m_r[WM][2], l_r[WM][2];
#pragma unroll
  for (int mt = 0; mt < WM; ++mt) m_r[mt][0] = m_r[mt][1] = kNegBig, l_r[mt][0] = l_r[mt][1] = 0.0f;

  int st = 0;  // stage of tile t
  for (int t = 0; t < n_tiles; ++t) {
    const int kb = kv_lo + t * BK;
    CpAsyncWait<ST - 2>();  // tile t (and Q) landed for this thread
    __syncthreads();        // ... for every thread; and every warp is done with tile t - 1
    {
      // Issue tile t + ST - 1 into the stage that tile t - 1 used.
      const int ld = st == 0 ? ST - 1 : st - 1;
      if (t + ST - 1 < n_tiles) {
        load_tile(ks + ld * BK * LD, kc, cr);
        load_tile(vs + ld * BK * LD, vc, cr);
      }
      CpAsyncCommit();
      if (t + ST < n_tiles) rows_of(kb + ST * BK, cr);
    }
    if constexpr (C::QREG) {
      if (t == 0) {
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
          for (int kk = 0; kk < KT; ++kk)
            Ldsm4(qf[mt][kk], qs + (wr0 + mt * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
      }
    }
    const T* kt = ks + st * BK * LD;
    const T* vt = vs + st * BK * LD;
    st = st + 1 == ST ? 0 : st + 1;
    // Warp-uniform: does any of the warp's rows see a key of this tile; does any row need a mask?
    const bool active = w_live && kb <= w_pos_last && kb + BK - 1 >= w_lo_first;
    const bool masked = w_pad || kb + BK - 1 > w_pos_first || kb < w_lo_last;

    float s[WM][NT][4];
    if (active) {
      // S = Q K^T.
#pragma unroll
      for (int mt = 0; mt < WM; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        uint32_t qa[WM][4];
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) {
          if constexpr (C::QREG) {
#pragma unroll
            for (int x = 0; x < 4; ++x) qa[mt][x] = qf[mt][kk][x];
          } else {
            Ldsm4(qa[mt], qs + (wr0 + mt * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
          }
        }
#pragma unroll
        for (int n2 = 0; n2 < NT / 2; ++n2) {
          uint32_t kb4[4];
          const int mi = lane >> 3;
          Ldsm4(kb4, kt + (n2 * 16 + (mi >> 1) * 8 + (lane & 7)) * LD + kk * 16 + (mi & 1) * 8);
#pragma unroll
          for (int mt = 0; mt < WM; ++mt) {
            Mma<T>(s[mt][2 * n2], qa[mt], kb4[0], kb4[1]);
            Mma<T>(s[mt][2 * n2 + 1], qa[mt], kb4[2], kb4[3]);
          }
        }
      }

      // Softcap / ALiBi (general path: s becomes the logit), then the causal / window mask.
      if (!plain) {
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
          for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int j = kb + n * 8 + tig * 2 + (e & 1);
              float v = s[mt][n][e] * a.scale;
              if (a.softcap > 0.0f) v = a.softcap * tanhf(v / a.softcap);
              s[mt][n][e] = v + slope * static_cast<float>(j - pos_r[mt][e >> 1]);
            }
      }
      if (masked) {
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
          for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int j = kb + n * 8 + tig * 2 + (e & 1), i = e >> 1;
              if (j > pos_r[mt][i] || j < first_r[mt][i]) s[mt][n][e] = -INFINITY;
            }
      }

      // Online softmax (base 2).
#pragma unroll
      for (int mt = 0; mt < WM; ++mt) {
        float mx[2] = {kNegBig, kNegBig};
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          mx[0] = fmaxf(mx[0], fmaxf(s[mt][n][0], s[mt][n][1]));
          mx[1] = fmaxf(mx[1], fmaxf(s[mt][n][2], s[mt][n][3]));
        }
        float msl[2], alpha[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
          mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
          const float m_new = fmaxf(m_r[mt][i], mx[i]);
          alpha[i] = Exp2((m_r[mt][i] - m_new) * sl);
          m_r[mt][i] = m_new;
          msl[i] = m_new * sl;
          l_r[mt][i] *= alpha[i];
        }
        if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {  // a row maximum moved
#pragma unroll
          for (int d = 0; d < DT; ++d) {
            o[mt][d][0] *= alpha[0];
            o[mt][d][1] *= alpha[0];
            o[mt][d][2] *= alpha[1];
            o[mt][d][3] *= alpha[1];
          }
        }
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float p = Exp2(fmaf(s[mt][n][e], sl, -msl[e >> 1]));  // -inf -> 0
            s[mt][n][e] = p;
            rs[e >> 1] += p;
          }
        l_r[mt][0] += rs[0];
        l_r[mt][1] += rs[1];
      }
    }

    if (active) {
      // O += P V.
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        uint32_t pa[WM][4];
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) {
          pa[mt][0] = Pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][1] = Pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][2] = Pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][3] = Pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int d2 = 0; d2 < DT / 2; ++d2) {
          uint32_t vb[4];
          const int mi = lane >> 3;
          Ldsm4T(vb, vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LD + d2 * 16 + (mi >> 1) * 8);
#pragma unroll
          for (int mt = 0; mt < WM; ++mt) {
            Mma<T>(o[mt][2 * d2], pa[mt], vb[0], vb[1]);
            Mma<T>(o[mt][2 * d2 + 1], pa[mt], vb[2], vb[3]);
          }
        }
      }
    }
  }
  CpAsyncWait<0>();  // nothing may be in flight when the block exits (the last groups are empty)

  // Normalise and store.
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int mt = 0; mt < WM; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float l = l_r[mt][i];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const int r = wr0 + mt * 16 + g + 8 * i;
      if (r >= rows) continue;
      T* orow = out + static_cast<int64_t>(q0 + r0 + r) * hq * hd + static_cast<int64_t>(h) * hd;
#pragma unroll
      for (int d = 0; d < DT; ++d) {
        const int c = d * 8 + tig * 2;
        if (c < hd) *reinterpret_cast<uint32_t*>(orow + c) = Pack2<T>(o[mt][d][2 * i] * inv, o[mt][d][2 * i + 1] * inv);
      }
    }
}

template <typename T, typename C>
cudaError_t Launch(const AttnArgs& a, cudaStream_t s) {
  const size_t smem = C::SmemBytes(sizeof(T));
  cudaError_t e =
      cudaFuncSetAttribute(PrefillKernel<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const int tiles = (a.max_q_len + C::kBQ - 1) / C::kBQ;
  const int64_t blocks = static_cast<int64_t>(a.n_seqs) * tiles * a.n_heads;
  if (blocks <= 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorNotSupported;
  PrefillKernel<T, C><<<static_cast<unsigned>(blocks), C::kThreads, smem, s>>>(a, tiles);
  return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// Hopper path (sm_90a): warpgroup MMA (wgmma.mma_async) for bf16/f16, head dims 64 and 128, no
// ALiBi / softcap (the mma.sync kernel above keeps the rest). One block of 2 warpgroups per
// 128-row query tile; each warpgroup owns 64 query rows. K/V tiles of BK keys are gathered from
// the paged cache with cp.async (any block size) into ST stages laid out as the wgmma 128-byte
// swizzle wants (rows of 64 elements = 128 bytes, 16-byte chunk c of row r stored at c ^ (r % 8);
// head dims above 64 in further 64-column blocks). S = Q K^T with Q and K from shared memory
// (K-major descriptors), online softmax in registers (base 2), O += P V with P in registers as
// the A operand and V from shared memory (N-major descriptor). Built only where the file is
// compiled for sm_90a; elsewhere the kernel is an empty stub and the launcher falls back.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_PA_WGMMA 1
#endif

template <typename T, int N>
__device__ __forceinline__ void WgmmaSS(float* d, uint64_t da, uint64_t db, int scale_d);
template <typename T, int N>
__device__ __forceinline__ void WgmmaRS(float* d, const uint32_t* a, uint64_t db);

#ifdef KILN_PA_BENCH_KNOBS
__device__ int g_pa_vswap = 0;  // bench only: V descriptor offsets swapped
#endif

#if defined(KILN_PA_WGMMA)
#include "backend/cuda/kernels/prefill_attention_wgmma.inc"

__device__ __forceinline__ void WgFence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void WgCommit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void WgWait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
// Pins accumulator registers at this point of the program (the wgmma writes them asynchronously).
template <int N>
__device__ __forceinline__ void PinRegs(float* r) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void FenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading / stride byte offsets.
__device__ __forceinline__ uint64_t SmemDesc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((saddr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32) | (1ull << 62);
}
#endif

// HD: head dim (64 or 128, exact); BK keys per tile; MINB blocks per SM; ST stages.
template <int HD_, int BK_, int MINB_, int ST_>
struct WgCfg {
  static constexpr int HD = HD_, BK = BK_, MINB = MINB_, ST = ST_;
  static constexpr int kThreads = 256;  // 2 warpgroups
  static constexpr int kBQ = 128;       // query rows per block, 64 per warpgroup
  static constexpr int kTileBytes(int rows) { return rows * HD * 2; }
  static constexpr size_t SmemBytes() { return 1024 + kTileBytes(kBQ) + 2 * ST * kTileBytes(BK); }
};

// Byte offset of 16-byte chunk c of row r in a swizzled tile of R rows.
template <int R>
__device__ __forceinline__ uint32_t SwzOff(int r, int c) {
  return static_cast<uint32_t>((c >> 3) * (R * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

template <typename T, typename C>
__global__ void __launch_bounds__(C::kThreads, C::MINB) WgPrefillKernel(const AttnArgs a, const int tiles_per_seq) {
#if defined(KILN_PA_WGMMA)
  constexpr int HD = C::HD, BQ = C::kBQ, BK = C::BK, NTH = C::kThreads, ST = C::ST;
  constexpr int NT = BK / 8, DT = HD / 8;
  constexpr int CPR = HD / 8;     // 16-byte chunks per row
  constexpr int RPP = NTH / CPR;  // rows per load pass
  constexpr int LIT = BK / RPP;
  constexpr uint32_t QB = C::kTileBytes(BQ), TB = C::kTileBytes(BK);
  static_assert(BK % RPP == 0 && BQ % RPP == 0 && ST >= 2, "load mapping");
  extern __shared__ __align__(16) unsigned char wg_smem[];
  const uint32_t raw_s = static_cast<uint32_t>(__cvta_generic_to_shared(wg_smem));
  const uint32_t pad = ((raw_s + 1023u) & ~1023u) - raw_s;
  unsigned char* sm = wg_smem + pad;  // 1024-byte aligned (the swizzle pattern repeats every 1024 B)
  const uint32_t q_s = raw_s + pad, k_s = q_s + QB, v_s = k_s + ST * TB;

  const int hq = a.n_heads, hkv = a.n_kv_heads;
  int lin = blockIdx.x;
  const int h = lin % hq;
  lin /= hq;
  const int seq = lin % a.n_seqs;
  const int tile = tiles_per_seq - 1 - lin / a.n_seqs;
  const int q0 = a.q_start[seq], qn = a.q_start[seq + 1] - q0;
  const int r0 = tile * BQ;
  if (r0 >= qn) return;
  const int rows = min(BQ, qn - r0);
  const int kvh = h / (hq / hkv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tig = lane & 3;
  const int wg = warp >> 2, wl = warp & 3;
  const int64_t row_stride = static_cast<int64_t>(hq + 2 * hkv) * HD;
  const int32_t* pos_g = a.positions + q0 + r0;
  const int win = a.sliding_window;
  const int kv_lo = win > 0 ? max(0, pos_g[0] - win + 1) : 0;
  const int kv_hi = pos_g[rows - 1] + 1;
  const int n_tiles = (kv_hi - kv_lo + BK - 1) / BK;

  const int lc = tid % CPR, lr = tid / CPR;  // this thread's 16-byte chunk and first row per load
  const uint4 zero = make_uint4(0, 0, 0, 0);
  {
    const T* qg = static_cast<const T*>(a.qkv) + static_cast<int64_t>(q0 + r0) * row_stride +
                  static_cast<int64_t>(h) * HD + lc * 8;
#pragma unroll
    for (int it = 0; it < BQ / RPP; ++it) {
      const int r = lr + it * RPP;
      unsigned char* d = sm + SwzOff<BQ>(r, lc);
      if (r < rows) {
        CpAsync16(d, qg + r * row_stride);
      } else {
        *reinterpret_cast<uint4*>(d) = zero;
      }
    }
  }
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const T* kc = static_cast<const T*>(a.k_cache) + static_cast<int64_t>(kvh) * HD + lc * 8;
  const T* vc = static_cast<const T*>(a.v_cache) + static_cast<int64_t>(kvh) * HD + lc * 8;
  auto rows_of = [&](int kb, int* cr) {
#pragma unroll
    for (int it = 0; it < LIT; ++it) {
      const int j = kb + lr + it * RPP;
      cr[it] = j < kv_hi ? (table[j / bs] * bs + j % bs) * hkv : -1;
    }
  };
  auto load_tile = [&](uint32_t tile_off, const T* cache, const int* cr) {
#pragma unroll
    for (int it = 0; it < LIT; ++it) {
      unsigned char* d = sm + tile_off + SwzOff<BK>(lr + it * RPP, lc);
      if (cr[it] >= 0) {
        CpAsync16(d, cache + static_cast<int64_t>(cr[it]) * HD);
      } else {
        *reinterpret_cast<uint4*>(d) = zero;
      }
    }
  };
  int cr[LIT];
  rows_of(kv_lo, cr);
#pragma unroll
  for (int p = 0; p < ST - 1; ++p) {
    if (p < n_tiles) {
      load_tile(QB + p * TB, kc, cr);
      load_tile(QB + ST * TB + p * TB, vc, cr);
    }
    CpAsyncCommit();
    rows_of(kv_lo + (p + 1) * BK, cr);
  }

  // This warpgroup's rows [gr0, gr0 + 64) and the positions that bound what it can see.
  const int gr0 = wg * 64;
  const bool g_live = gr0 < rows;
  const bool g_pad = gr0 + 64 > rows;
  const int g_pos_first = g_live ? pos_g[gr0] : 0;
  const int g_pos_last = g_live ? pos_g[min(gr0 + 64, rows) - 1] : -1;
  const int g_lo_first = win > 0 ? max(0, g_pos_first - win + 1) : 0;
  const int g_lo_last = win > 0 ? max(0, g_pos_last - win + 1) : 0;
  int pos_r[2], first_r[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = gr0 + wl * 16 + g + 8 * i;
    pos_r[i] = r < rows ? pos_g[r] : -1;
    first_r[i] = win > 0 ? max(0, pos_r[i] - win + 1) : 0;
  }
  const float sl = a.scale * kLog2e;

  float o[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) o[i] = 0.0f;
  float m_r[2] = {kNegBig, kNegBig}, l_r[2] = {0.0f, 0.0f};
#ifdef KILN_PA_BENCH_KNOBS
  const uint32_t v_lbo = g_pa_vswap ? 1024 : BK * 128, v_sbo = g_pa_vswap ? BK * 128 : 1024;
#else
  constexpr uint32_t v_lbo = BK * 128, v_sbo = 1024;  // next 64 head dims / next 8 keys
#endif
  // Q descriptor base of this warpgroup's 64 rows (1024-aligned).
  const uint32_t qd = q_s + gr0 * 128;

  int st = 0;
  for (int t = 0; t < n_tiles; ++t) {
    const int kb = kv_lo + t * BK;
    CpAsyncWait<ST - 2>();
    FenceProxyAsync();  // cp.async / zero stores -> visible to the tensor cores (async proxy)
    __syncthreads();
    {
      const int ld = st == 0 ? ST - 1 : st - 1;
      if (t + ST - 1 < n_tiles) {
        load_tile(QB + ld * TB, kc, cr);
        load_tile(QB + ST * TB + ld * TB, vc, cr);
      }
      CpAsyncCommit();
      if (t + ST < n_tiles) rows_of(kb + ST * BK, cr);
    }
    const uint32_t kt = k_s + st * TB, vt = v_s + st * TB;
    st = st + 1 == ST ? 0 : st + 1;
    const bool active = g_live && kb <= g_pos_last && kb + BK - 1 >= g_lo_first;  // warpgroup-uniform
    if (!active) continue;
    const bool masked = g_pad || kb + BK - 1 > g_pos_first || kb < g_lo_last;

    float s[BK / 2];
    WgFence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t cofs = (kk & 3) * 32;  // 16 columns = 32 bytes into the 128-byte row
      WgmmaSS<T, BK>(s, SmemDesc(qd + (kk >> 2) * (BQ * 128) + cofs, 16, 1024),
                     SmemDesc(kt + (kk >> 2) * (BK * 128) + cofs, 16, 1024), kk > 0);
    }
    WgCommit();
    WgWait0();
    PinRegs<BK / 2>(s);

    if (masked) {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = kb + n * 8 + tig * 2 + (e & 1), i = e >> 1;
          if (j > pos_r[i] || j < first_r[i]) s[n * 4 + e] = -INFINITY;
        }
    }
    float mx[2] = {kNegBig, kNegBig};
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      mx[0] = fmaxf(mx[0], fmaxf(s[n * 4 + 0], s[n * 4 + 1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[n * 4 + 2], s[n * 4 + 3]));
    }
    float msl[2], alpha[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float m_new = fmaxf(m_r[i], mx[i]);
      alpha[i] = Exp2((m_r[i] - m_new) * sl);
      m_r[i] = m_new;
      msl[i] = m_new * sl;
      l_r[i] *= alpha[i];
    }
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int d = 0; d < DT; ++d) {
        o[d * 4 + 0] *= alpha[0];
        o[d * 4 + 1] *= alpha[0];
        o[d * 4 + 2] *= alpha[1];
        o[d * 4 + 3] *= alpha[1];
      }
    }
    uint32_t pa[BK / 16][4];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = Exp2(fmaf(s[n * 4 + e], sl, -msl[e >> 1]));
        rs[e >> 1] += p[e];
      }
      pa[n >> 1][(n & 1) * 2 + 0] = Pack2<T>(p[0], p[1]);
      pa[n >> 1][(n & 1) * 2 + 1] = Pack2<T>(p[2], p[3]);
    }
    l_r[0] += rs[0];
    l_r[1] += rs[1];

    WgFence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) WgmmaRS<T, HD>(o, pa[kk], SmemDesc(vt + kk * 2048, v_lbo, v_sbo));
    WgCommit();
    WgWait0();  // the stage is refilled after the next barrier
    PinRegs<HD / 2>(o);
  }
  CpAsyncWait<0>();

  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = l_r[i];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int r = gr0 + wl * 16 + g + 8 * i;
    if (r >= rows) continue;
    T* orow = out + static_cast<int64_t>(q0 + r0 + r) * hq * HD + static_cast<int64_t>(h) * HD;
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<uint32_t*>(orow + d * 8 + tig * 2) =
          Pack2<T>(o[d * 4 + 2 * i] * inv, o[d * 4 + 2 * i + 1] * inv);
  }
#endif
}

// True where this binary holds the sm_90a image of the Hopper kernel and the device runs it
// (compute capability 9.0); the sm_90 pass compiles an empty stub, told apart by its registers.
template <typename T, typename C>
bool WgAvailable() {
  static const bool ok = [] {
    int d = 0, major = 0, minor = 0;
    if (cudaGetDevice(&d) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d) != cudaSuccess || major != 9 || minor != 0)
      return false;
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, WgPrefillKernel<T, C>) != cudaSuccess) return false;
    return fa.numRegs >= 64;
  }();
  return ok;
}

template <typename T, typename C>
cudaError_t LaunchWg(const AttnArgs& a, cudaStream_t s) {
  const size_t smem = C::SmemBytes();
  cudaError_t e =
      cudaFuncSetAttribute(WgPrefillKernel<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const int tiles = (a.max_q_len + C::kBQ - 1) / C::kBQ;
  const int64_t blocks = static_cast<int64_t>(a.n_seqs) * tiles * a.n_heads;
  if (blocks <= 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorNotSupported;
  WgPrefillKernel<T, C><<<static_cast<unsigned>(blocks), C::kThreads, smem, s>>>(a, tiles);
  return cudaGetLastError();
}

// One configuration per head dim, 128 query rows per block of 8 warps. For hd 128 two blocks per
// SM (128 registers, Q re-read from shared memory) beat one block with Q in registers once the
// grid has more blocks than SMs (H100, Llama-3-8B shape, S = 2048: 0.170 vs 0.193 ms); with at
// most one block per SM the one-block form is faster (S = 512: 0.032 vs 0.037 ms); see
// bench/kernels/prefill_attention_bench.cu.
using Cfg64 = Cfg<64, 8, 1, 2, 64, 2, true>;
using Cfg128 = Cfg<128, 8, 1, 2, 64, 2, false>;
using Cfg256 = Cfg<256, 8, 1, 1, 32, 2, false>;

using Cfg128OnePerSm = Cfg<128, 8, 1, 1, 64, 2, true>;  // grids of at most one block per SM

int NumSms() {
  static const int n = [] {
    int d = 0, v = 0;
    if (cudaGetDevice(&d) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, d) != cudaSuccess)
      return 0;
    return v;
  }();
  return n;
}

template <typename T>
cudaError_t LaunchMmaT(const AttnArgs& a, cudaStream_t s) {
  if (a.head_dim <= 64) return Launch<T, Cfg64>(a, s);
  if (a.head_dim <= 128) {
    const int64_t blocks = static_cast<int64_t>(a.n_seqs) * ((a.max_q_len + 127) / 128) * a.n_heads;
    if (blocks <= NumSms()) return Launch<T, Cfg128OnePerSm>(a, s);
    return Launch<T, Cfg128>(a, s);
  }
  return Launch<T, Cfg256>(a, s);
}

// Hopper path configurations (H100, Llama-3-8B shape, see bench/kernels/prefill_attention_bench.cu):
// for hd 128 two blocks per SM with 64-key tiles (128 registers) once the grid has more blocks
// than SMs (S = 2048: 0.130 ms vs 0.171 for the mma.sync kernel), one block per SM with 128-key
// tiles otherwise (a 512-token chunk after 2048 cached: 0.093 vs 0.107 ms).
using WgCfg64 = WgCfg<64, 128, 1, 2>;
using WgCfg128 = WgCfg<128, 64, 2, 2>;
using WgCfg128OnePerSm = WgCfg<128, 128, 1, 2>;

bool WgEnabled() {  // KILN_PREFILL_MMA_SYNC=1 keeps the mma.sync kernel everywhere (A/B runs)
  static const bool on = [] {
    const char* e = std::getenv("KILN_PREFILL_MMA_SYNC");
    return e == nullptr || e[0] == '\0' || e[0] == '0';
  }();
  return on;
}

template <typename T>
cudaError_t LaunchT(const AttnArgs& a, cudaStream_t s) {
  if (a.softcap <= 0.0f && a.alibi == nullptr && WgEnabled()) {
    if (a.head_dim == 128 && WgAvailable<T, WgCfg128>()) {
      const int64_t blocks = static_cast<int64_t>(a.n_seqs) * ((a.max_q_len + 127) / 128) * a.n_heads;
      if (blocks <= NumSms()) return LaunchWg<T, WgCfg128OnePerSm>(a, s);
      return LaunchWg<T, WgCfg128>(a, s);
    }
    if (a.head_dim == 64 && WgAvailable<T, WgCfg64>()) return LaunchWg<T, WgCfg64>(a, s);
  }
  return LaunchMmaT<T>(a, s);
}

}  // namespace

bool PrefillAttentionSupported(const AttnArgs& a, ElemType t) {
  return t != ElemType::kF32 && a.head_dim >= 32 && a.head_dim <= 256 && a.head_dim % 8 == 0 && a.n_kv_heads > 0 &&
         a.n_heads % a.n_kv_heads == 0 && a.n_seqs > 0 && a.block_size > 0;
}

cudaError_t LaunchPrefillAttention(const AttnArgs& a, ElemType t, cudaStream_t s) {
  if (a.n_tokens <= 0) return cudaSuccess;
  if (!PrefillAttentionSupported(a, t)) return cudaErrorNotSupported;
  if (t == ElemType::kBF16) return LaunchT<__nv_bfloat16>(a, s);
  return LaunchT<__half>(a, s);
}

}  // namespace kiln::cuda
