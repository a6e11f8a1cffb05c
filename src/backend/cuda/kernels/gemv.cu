// Streaming skinny GEMM (decode): out[m, n] = x[m, k] @ w[n, k]^T (+ bias), m <= 16, and its
// gated form out[m, f] = act(x @ gate^T) * (x @ up^T) for the MLP's gate_up projection.
//
// Decode is a pure weight stream, so the kernel is shaped around reading W exactly once at
// full bandwidth: each warp owns R consecutive weight rows and sweeps k with 16-byte
// streaming loads (L1 bypass), U vectors per row in flight per lane; the MT activation rows
// are re-read from L1/L2 (small, shared by every warp of the SM). fp32 accumulation, one warp
// reduction per (row, m) at the end.
#include <cstdlib>
#include <type_traits>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kU = 4;  // vectors per row in flight per lane

// Fusions (GemvFuse): gated (gated_f > 0, R = 2): W is [2f, k] (gate rows, then up rows);
// warp p streams rows p and p + f and writes out[m, f] = act(gate) * up, rounding gate and up
// to T first as Linear + GatedActivation would. residual: residual[i, row] += the result
// (rounded to T first, as Linear + Add would) instead of writing out; each output has one owner
// warp. (An RMSNorm of x inside the loop was tried and removed: the extra work in the inner
// loop cost the one-token stream 0.5-1.5% on the H100, docs/PERFORMANCE.md.) kRms (rms_eps > 0):
// the norm's weight is folded into w, so each warp only sums x^2 over the x values it reads anyway
// and scales its dot products by 1 / rms(x) at the end: no norm kernel, no extra pass over x.
template <typename T, int MT, int R, bool kRms = false>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(T* __restrict__ out, const T* __restrict__ x,
                                                          const T* __restrict__ w, const float* __restrict__ bias,
                                                          int m, int64_t n, int64_t k, bool vec, GemvFuse fuse) {
  PdlWait();
  PdlTrigger();
  constexpr int N = Vec16<T>::kN;
  const int64_t gated_f = fuse.gated_f;
  const int lane = threadIdx.x & 31;
  const int64_t wid = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t row0 = gated_f > 0 ? wid : wid * R;
  if (row0 >= (gated_f > 0 ? gated_f : n)) return;
  const T* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = gated_f > 0 ? row0 + r * gated_f : (row0 + r < n ? row0 + r : row0);
    wr[r] = w + row * k;
  }

  float acc[R][MT], ss[MT];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[r][i] = 0.0f;
#pragma unroll
  for (int i = 0; i < MT; ++i) ss[i] = 0.0f;

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
              if constexpr (kRms) ss[i] = fmaf(xe, xe, ss[i]);
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
        if constexpr (kRms) ss[i] = fmaf(xe, xe, ss[i]);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][i] = fmaf(ToF32(wr[r][j]), xe, acc[r][i]);
      }
    }
  }
  // Every warp read all of x: its sum of squares is the whole row's.
  float inv_rms[MT];
#pragma unroll
  for (int i = 0; i < MT; ++i) inv_rms[i] = kRms ? rsqrtf(WarpSum(ss[i]) / static_cast<float>(k) + fuse.rms_eps) : 1.0f;
  if (R == 2 && gated_f > 0) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      const float g = WarpSum(acc[0][i]) * inv_rms[i], u = WarpSum(acc[R - 1][i]) * inv_rms[i];
      if (lane == (i & 31) && i < m) {
        const float gb = ToF32(FromF32<T>(g + (bias ? bias[row0] : 0.0f)));
        const float ub = ToF32(FromF32<T>(u + (bias ? bias[row0 + gated_f] : 0.0f)));
        out[i * gated_f + row0] = FromF32<T>(ApplyAct(gb, fuse.act) * ub);
      }
    }
    return;
  }
  T* __restrict__ res = static_cast<T*>(fuse.residual);
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      const float s = WarpSum(acc[r][i]) * inv_rms[i];
      if (lane == ((r * MT + i) & 31) && i < m && row0 + r < n) {
        const T v = FromF32<T>(s + (bias ? bias[row0 + r] : 0.0f));
        if (res) {
          T& dst = res[i * n + row0 + r];
          dst = FromF32<T>(ToF32(dst) + ToF32(v));
        } else {
          out[i * n + row0 + r] = v;
        }
      }
    }
  }
}

// ---- tensor-core skinny GEMM (f16/bf16, 2 <= m <= 16) ----
// out^T[n, m] = W[n, k] . x^T: W is mma's A operand (16 weight rows per block), x^T its B
// operand (8 activation rows per n-tile, NT tiles). Each lane loads 16 contiguous bytes of a
// W row (rows g and g + 8 of the tile) and of an x row: the dot product does not care about
// k order, so A and B fragments use the same permuted k (lane quad tig owns k0 + 8 tig .. +8;
// mma step s takes elements 4s..4s+3 of it). The 8 warps of a block split k; their partial
// 16 x 8 NT tiles are summed through shared memory.
template <typename T>
__device__ __forceinline__ void MmaTile(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1);
template <>
__device__ __forceinline__ void MmaTile<__nv_bfloat16>(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                       uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void MmaTile<__half>(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

constexpr int kMmaU = 4;  // 32-k chunks in flight per warp

template <typename T, int NT, int RT>
__global__ void __launch_bounds__(kWarps * 32) GemvMmaKernel(T* __restrict__ out, const T* __restrict__ x,
                                                             const T* __restrict__ w, const float* __restrict__ bias,
                                                             int m, int64_t n, int64_t k, GemvFuse fuse) {
  const int64_t gated_f = fuse.gated_f;
  PdlWait();
  PdlTrigger();
  __shared__ float red[kWarps][RT][NT][16][8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
  // Gated (RT = 1): the tile's rows 0-7 are gate rows p0.., rows 8-15 the matching up rows.
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * (gated_f > 0 ? 8 : 16 * RT);
  const T* wrow[RT][2];
#pragma unroll
  for (int rt = 0; rt < RT; ++rt) {
    if (gated_f > 0) {
      wrow[rt][0] = w + min(row0 + g, gated_f - 1) * k;
      wrow[rt][1] = w + (min(row0 + g, gated_f - 1) + gated_f) * k;
    } else {
      wrow[rt][0] = w + min(row0 + rt * 16 + g, n - 1) * k;
      wrow[rt][1] = w + min(row0 + rt * 16 + g + 8, n - 1) * k;
    }
  }
  const T* xr[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) xr[t] = (t * 8 + g < m) ? x + static_cast<int64_t>(t * 8 + g) * k : nullptr;
  float c[RT][NT][4];
#pragma unroll
  for (int rt = 0; rt < RT; ++rt)
#pragma unroll
    for (int t = 0; t < NT; ++t) c[rt][t][0] = c[rt][t][1] = c[rt][t][2] = c[rt][t][3] = 0.0f;

  const int64_t chunks = (k + 31) / 32;
  for (int64_t c0 = warp; c0 < chunks; c0 += kWarps * kMmaU) {
    Vec16<T> wv[kMmaU][RT][2], xv[kMmaU][NT];
#pragma unroll
    for (int u = 0; u < kMmaU; ++u) {
      const int64_t kk = (c0 + u * kWarps) * 32 + tig * 8;
      const bool in = c0 + u * kWarps < chunks && kk < k;
#pragma unroll
      for (int rt = 0; rt < RT; ++rt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          wv[u][rt][h].u = make_uint4(0, 0, 0, 0);
          if (in) wv[u][rt][h] = LoadStream16(wrow[rt][h] + kk);
        }
      }
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        xv[u][t].u = make_uint4(0, 0, 0, 0);
        if (in && xr[t]) xv[u][t] = Load16(xr[t] + kk);
      }
    }
#pragma unroll
    for (int u = 0; u < kMmaU; ++u) {
#pragma unroll
      for (int s = 0; s < 2; ++s) {
#pragma unroll
        for (int rt = 0; rt < RT; ++rt) {
          // A: a0 (row g, k 0-1), a1 (row g+8, k 0-1), a2 (row g, k 2-3), a3 (row g+8, k 2-3) of step s.
          const uint32_t* pa = reinterpret_cast<const uint32_t*>(&wv[u][rt][0].u);
          const uint32_t* pb = reinterpret_cast<const uint32_t*>(&wv[u][rt][1].u);
#pragma unroll
          for (int t = 0; t < NT; ++t) {
            const uint32_t* px = reinterpret_cast<const uint32_t*>(&xv[u][t].u);
            MmaTile<T>(c[rt][t], pa[2 * s], pb[2 * s], pa[2 * s + 1], pb[2 * s + 1], px[2 * s], px[2 * s + 1]);
          }
        }
      }
    }
  }
  // C fragment: c0, c1 = (row g, m 2 tig, 2 tig + 1); c2, c3 = (row g + 8, same m).
#pragma unroll
  for (int rt = 0; rt < RT; ++rt) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      red[warp][rt][t][g][2 * tig] = c[rt][t][0];
      red[warp][rt][t][g][2 * tig + 1] = c[rt][t][1];
      red[warp][rt][t][g + 8][2 * tig] = c[rt][t][2];
      red[warp][rt][t][g + 8][2 * tig + 1] = c[rt][t][3];
    }
  }
  __syncthreads();
  if (gated_f > 0) {
    for (int i = threadIdx.x; i < NT * 8 * 8; i += kWarps * 32) {
      const int t = i / 64, r = (i / 8) % 8, mm = t * 8 + i % 8;
      const int64_t p = row0 + r;
      if (mm >= m || p >= gated_f) continue;
      float vg = 0.0f, vu = 0.0f;
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) {
        vg += red[wi][0][t][r][i % 8];
        vu += red[wi][0][t][r + 8][i % 8];
      }
      if (bias) {
        vg += bias[p];
        vu += bias[p + gated_f];
      }
      out[static_cast<int64_t>(mm) * gated_f + p] =
          FromF32<T>(ApplyAct(ToF32(FromF32<T>(vg)), fuse.act) * ToF32(FromF32<T>(vu)));
    }
    return;
  }
  for (int i = threadIdx.x; i < RT * NT * 16 * 8; i += kWarps * 32) {
    const int rt = i / (NT * 128), t = (i / 128) % NT, r = (i / 8) % 16, mm = t * 8 + i % 8;
    const int64_t row = row0 + rt * 16 + r;
    if (mm >= m || row >= n) continue;
    float v = 0.0f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) v += red[wi][rt][t][r][i % 8];
    if (bias) v += bias[row];
    if (fuse.residual) {
      T& dst = static_cast<T*>(fuse.residual)[static_cast<int64_t>(mm) * n + row];
      dst = FromF32<T>(ToF32(dst) + ToF32(FromF32<T>(v)));
    } else {
      out[static_cast<int64_t>(mm) * n + row] = FromF32<T>(v);
    }
  }
}

template <typename T, int MT, int R, bool kRms = false>
void Launch(T* out, const T* x, const T* w, const float* bias, int m, int64_t n, int64_t k, bool vec,
            cudaStream_t s, GemvFuse fuse = {}) {
  const int64_t rows_per_block = int64_t(kWarps) * R;
  const int64_t outs = fuse.gated_f > 0 ? fuse.gated_f * R : n;  // a gated warp streams 2 rows for 1 output
  const unsigned blocks = static_cast<unsigned>((outs + rows_per_block - 1) / rows_per_block);
  LaunchPdl(GemvKernel<T, MT, R, kRms>, dim3(blocks), dim3(kWarps * 32), 0, s, out, x, w, bias, m, n, k, vec, fuse);
}

template <typename T, int NT, int RT>
void LaunchMma(T* out, const T* x, const T* w, const float* bias, int m, int64_t n, int64_t k, cudaStream_t s,
               GemvFuse fuse = {}) {
  const int64_t per_block = fuse.gated_f > 0 ? 8 : 16 * RT;
  const int64_t outs = fuse.gated_f > 0 ? fuse.gated_f : n;
  LaunchPdl(GemvMmaKernel<T, NT, RT>, dim3(static_cast<unsigned>((outs + per_block - 1) / per_block)),
            dim3(kWarps * 32), 0, s, out, x, w, bias, m, n, k, fuse);
}

// Experiment knobs (bench A/B): KILN_GEMV_RT=1|2 row tiles per block on the tensor-core path;
// KILN_GEMV_M1=mma sends m = 1 to the tensor-core path too.
int EnvInt(const char* name, int def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : def;
}

// Our kernels for m <= 16: the tensor-core tile kernel for 2 <= m (f16/bf16, aligned), the
// streaming FMA kernel otherwise.
template <typename T>
void Dispatch(T* out, const T* x, const T* w, const float* bias, int m, int64_t n, int64_t k, bool vec,
              GemvFuse fuse, cudaStream_t s) {
  if (fuse.rms_eps > 0.0f) return Launch<T, 1, 2, true>(out, x, w, bias, m, n, k, vec, s, fuse);  // m = 1
  if constexpr (!std::is_same_v<T, float>) {
    static const int rt = EnvInt("KILN_GEMV_RT", 1);
    static const bool m1_mma = EnvInt("KILN_GEMV_M1_MMA", 0) != 0;
    if ((m >= 2 || m1_mma) && vec) {
      if (fuse.gated_f > 0 || rt != 2) {
        if (m <= 8) return LaunchMma<T, 1, 1>(out, x, w, bias, m, n, k, s, fuse);
        return LaunchMma<T, 2, 1>(out, x, w, bias, m, n, k, s, fuse);
      }
      if (m <= 8) return LaunchMma<T, 1, 2>(out, x, w, bias, m, n, k, s, fuse);
      return LaunchMma<T, 2, 2>(out, x, w, bias, m, n, k, s, fuse);
    }
  }
  if (m <= 1) return Launch<T, 1, 2>(out, x, w, bias, m, n, k, vec, s, fuse);
  if (m <= 2) return Launch<T, 2, 2>(out, x, w, bias, m, n, k, vec, s, fuse);
  if (m <= 4) return Launch<T, 4, 2>(out, x, w, bias, m, n, k, vec, s, fuse);
  if (m <= 8) return Launch<T, 8, 2>(out, x, w, bias, m, n, k, vec, s, fuse);
  return Launch<T, 16, 2>(out, x, w, bias, m, n, k, vec, s, fuse);
}

}  // namespace

cudaError_t LaunchGemvFused(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t n,
                            int64_t k, const GemvFuse& fuse, ElemType t, cudaStream_t s) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (m > kGemvMaxM || (fuse.gated_f > 0 && (m > kGemvGatedMaxM || n != 2 * fuse.gated_f)) ||
      (fuse.rms_eps > 0.0f && m != 1))
    return cudaErrorInvalidValue;
  const int64_t nv = 16 / ElemBytes(t);
  const bool vec = k % nv == 0 && Aligned16(x) && Aligned16(w);
  KILN_DISPATCH_FLOAT(t, T, Dispatch<T>(static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(w),
                                        bias, static_cast<int>(m), n, k, vec, fuse, s));
  return cudaGetLastError();
}

cudaError_t LaunchGemvGated(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t f,
                            int64_t k, Act act, ElemType t, cudaStream_t s) {
  GemvFuse fuse;
  fuse.gated_f = f;
  fuse.act = act;
  return LaunchGemvFused(out, x, w, bias, m, 2 * f, k, fuse, t, s);
}

cudaError_t LaunchGemv(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t n, int64_t k,
                       ElemType t, cudaStream_t s) {
  return LaunchGemvFused(out, x, w, bias, m, n, k, GemvFuse{}, t, s);
}

}  // namespace kiln::cuda
