// Split-K ("flash-decoding") attention over the paged KV cache, in one launch.
//
// Grid: x = query token * C + split rank, y = kv head * head chunk. The C blocks of one (token,
// kv head) form a thread-block cluster (C <= 8, or 16 where the device co-schedules it): each
// takes an equal share of the token's real key range (read from positions[] on the device, so
// max_seq_len may be any upper bound, as in a CUDA graph captured for a length bucket) and the
// ranks merge their (max, sum, output) through distributed shared memory: no workspace, no second
// kernel. C depends only on n_tokens, the head counts and max_seq_len (MakePlan).
//
// Inside a block, the HB query heads of one GQA group share every K/V read: each lane holds 8
// dims of q for every head in registers. A key row is read by LPK lanes (8 elements = one or two
// 16-byte loads each), so a warp covers KPW = 32 / LPK keys per step; kU steps of K and V loads
// are issued before the first use, and the online softmax keeps its running max uniform over the
// warp, so the warp's key groups merge by a plain sum at the end. Works for any query token (also
// prefill), as the general path; head_dim a multiple of 8, at most 256; f32, f16, bf16.
#include <cooperative_groups.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backend/cuda/kernels/common.cuh"

namespace kiln::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxCluster = 16;   // 8 is portable; 16 where the device schedules it
constexpr int kMinKeys = 32;      // fewest key positions worth a block of their own
constexpr int kMaxHeadDim = 256;  // 32 lanes x 8 elements
constexpr float kLog2e = 1.4426950408889634f;

struct Plan {
  int hb, hchunks, cluster;
};

bool ClustersAvailable() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return ok;
}

// Depends only on shapes and max_seq_len (an upper bound is fine), never on device data. Splits
// double while the grid is under two blocks per SM and each split keeps >= kMinKeys keys (twice
// that to go past the portable cluster size of 8). A larger grid runs in waves of `slots`
// resident blocks: it is split in two when that fills its last wave enough better to pay for the
// merge (a split block streams ~10% slower). On the H100 (bench/kernels/decode_attention_bench.cu,
// --shape) this picked the faster of 1 and 2 splits at all 7 large shapes timed, e.g. batch 64 at
// 4096 keys 68.6% -> 80.6% of copy bandwidth, batch 100 at 3072 keys 73.1% -> 79.5%.
Plan MakePlan(const AttnArgs& a, int num_sms, int hb, int max_cluster, int slots) {
  Plan p;
  const int g = a.n_heads / a.n_kv_heads;
  p.hb = hb;
  p.hchunks = (g + hb - 1) / hb;
  const int64_t base = static_cast<int64_t>(a.n_tokens) * a.n_kv_heads * p.hchunks;
  const int len = a.max_seq_len > 0 ? a.max_seq_len : 1;
  p.cluster = 1;
  while (p.cluster < max_cluster && base * p.cluster < 2LL * num_sms &&
         len > p.cluster * kMinKeys * (p.cluster >= 8 ? 2 : 1))
    p.cluster *= 2;
  if (p.cluster == 1 && max_cluster >= 2 && base >= 2LL * num_sms && len > 2 * kMinKeys && slots > 0) {
    auto fill = [slots](int64_t blocks) {  // share of the resident slots busy, over all waves
      const double waves = static_cast<double>(blocks) / slots;
      return waves / std::ceil(waves);
    };
    if (0.9 * fill(2 * base) > fill(base)) p.cluster = 2;
  }
  return p;
}

size_t SmemBytes(int hb, int hd) { return sizeof(float) * (kWarps + 1) * hb * (hd + 2); }

__device__ __forceinline__ int SeqOf(const int32_t* q_start, int n_seqs, int t) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (q_start[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// 8 consecutive elements of T: one 16-byte word (f16/bf16) or two (f32).
template <typename T>
struct Row8 {
  uint4 u[sizeof(T) / 2];
};
template <typename T>
__device__ __forceinline__ void LoadRow8(Row8<T>& r, const T* p) {
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(T) / 2); ++i) r.u[i] = LoadStream16(p + i * Vec16<T>::kN).u;
}
template <typename T>
__device__ __forceinline__ void ZeroRow8(Row8<T>& r) {
#pragma unroll
  for (int i = 0; i < static_cast<int>(sizeof(T) / 2); ++i) r.u[i] = make_uint4(0, 0, 0, 0);
}
__device__ __forceinline__ void ToFloat8(const Row8<float>& r, float f[8]) {
  f[0] = __uint_as_float(r.u[0].x), f[1] = __uint_as_float(r.u[0].y);
  f[2] = __uint_as_float(r.u[0].z), f[3] = __uint_as_float(r.u[0].w);
  f[4] = __uint_as_float(r.u[1].x), f[5] = __uint_as_float(r.u[1].y);
  f[6] = __uint_as_float(r.u[1].z), f[7] = __uint_as_float(r.u[1].w);
}
__device__ __forceinline__ void ToFloat8(const Row8<__nv_bfloat16>& r, float f[8]) {
  const uint32_t w[4] = {r.u[0].x, r.u[0].y, r.u[0].z, r.u[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void ToFloat8(const Row8<__half>& r, float f[8]) {
  const uint32_t w[4] = {r.u[0].x, r.u[0].y, r.u[0].z, r.u[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h;
    memcpy(&h, &w[i], 4);
    const float2 v = __half22float2(h);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// Weight of a partial whose max is m against the overall max mx (an empty partial has m = -inf).
__device__ __forceinline__ float PartWeight(float m, float mx) { return m == -INFINITY ? 0.0f : exp2f(m - mx); }

// How a block's lanes cover a key row: LPK lanes per key (8 elements each), KPW keys per warp.
struct Lanes {
  int lpk_log, lpk, kpw, sub, d0;
  bool dim_ok;
};
__device__ __forceinline__ Lanes LanesOf(int hd, int lane) {
  Lanes ln;
  const int nchunk = hd >> 3;  // 8-element pieces of a row
  ln.lpk_log = nchunk <= 1 ? 0 : 32 - __clz(nchunk - 1);
  ln.lpk = 1 << ln.lpk_log;
  ln.kpw = 32 >> ln.lpk_log;
  ln.sub = lane >> ln.lpk_log;
  const int dl = lane & (ln.lpk - 1);
  ln.d0 = dl * 8;
  ln.dim_ok = dl < nchunk;
  return ln;
}

// One warp's running softmax state for HB heads, 8 output dims per lane.
template <int HB>
struct Acc {
  float m[HB], l[HB], o[HB][8];
};

// q of heads h0 .. h0 + ng - 1 of token t, 8 dims per lane (zero for padding lanes and heads past
// the group).
template <typename T, int HB>
__device__ __forceinline__ void LoadQ(const AttnArgs& a, const Lanes& ln, int t, int h0, int ng, float (&q)[HB][8]) {
  const int hd = a.head_dim, row_stride = (a.n_heads + 2 * a.n_kv_heads) * hd;
  const T* qp =
      static_cast<const T*>(a.qkv) + static_cast<int64_t>(t) * row_stride + static_cast<int64_t>(h0) * hd + ln.d0;
#pragma unroll
  for (int g = 0; g < HB; ++g) {
    Row8<T> r;
    ZeroRow8(r);
    if (g < ng && ln.dim_ok) {
#pragma unroll
      for (int i = 0; i < static_cast<int>(sizeof(T) / 2); ++i) r.u[i] = Load16(qp + g * hd + i * Vec16<T>::kN).u;
    }
    ToFloat8(r, q[g]);
  }
}

// The warp's share of keys [jb, je) of sequence seq (query position last) for heads h0 .. h0 +
// ng - 1 of KV head kvh: warps take KPW * kU keys in turn. Scores are kept in log2 units (x log2 e) so that every
// exponential is an exp2f. On return the warp's key groups are merged: r is uniform over the warp.
template <typename T, int HB>
__device__ __forceinline__ void AttendKeys(const AttnArgs& a, const Lanes& ln, const float (&q)[HB][8], int h0, int ng,
                                           int seq, int kvh, int jb, int je, int last, Acc<HB>& r) {
  constexpr int kU = (sizeof(T) == 4 ? 4 : 8) * 4 / HB;  // key steps in flight per warp iteration
  const int hd = a.head_dim, warp = threadIdx.x >> 5, lpk = ln.lpk, kpw = ln.kpw, sub = ln.sub;
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const bool bs_pow2 = (bs & (bs - 1)) == 0;
  const int bs_log = __ffs(bs) - 1;
  const T* kc = static_cast<const T*>(a.k_cache) + static_cast<int64_t>(kvh) * hd + ln.d0;
  const T* vc = static_cast<const T*>(a.v_cache) + static_cast<int64_t>(kvh) * hd + ln.d0;
  const int64_t slot_stride = static_cast<int64_t>(a.n_kv_heads) * hd;
  const float scale = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
  const float cap = a.softcap, inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
  float slope[HB];  // ALiBi, in log2 units
#pragma unroll
  for (int g = 0; g < HB; ++g) {
    slope[g] = a.alibi && g < ng ? a.alibi[h0 + g] * kLog2e : 0.0f;
    r.m[g] = -INFINITY;
    r.l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) r.o[g][e] = 0.0f;
  }

  const int step = kpw * kU;
  for (int base = jb + warp * step; base < je; base += kWarps * step) {
    Row8<T> kr[kU], vr[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      ZeroRow8(kr[u]);
      ZeroRow8(vr[u]);
      const int j = base + u * kpw + sub;
      if (j < je && ln.dim_ok) {
        const int pg = bs_pow2 ? (j >> bs_log) : j / bs;
        const int64_t off = (static_cast<int64_t>(__ldg(table + pg)) * bs + (j - pg * bs)) * slot_stride;
        LoadRow8(kr[u], kc + off);
        LoadRow8(vr[u], vc + off);
      }
    }
    // Scores: per-lane partial dots, then a sum over the LPK lanes of each key row.
    float s[kU][HB];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      float kf[8];
      ToFloat8(kr[u], kf);
#pragma unroll
      for (int g = 0; g < HB; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d = fmaf(q[g][e], kf[e], d);
        s[u][g] = d;
      }
    }
    for (int o = 1; o < lpk; o <<= 1) {
#pragma unroll
      for (int u = 0; u < kU; ++u)
#pragma unroll
        for (int g = 0; g < HB; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], o);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = base + u * kpw + sub;
#pragma unroll
      for (int g = 0; g < HB; ++g) {
        float v = s[u][g] * scale;
        if (cap > 0.0f) v = cap * tanhf(v * inv_cap) * kLog2e;
        v += slope[g] * static_cast<float>(j - last);
        s[u][g] = j < je ? v : -INFINITY;
      }
    }
    // Online softmax with a warp-uniform running max.
#pragma unroll
    for (int g = 0; g < HB; ++g) {
      float mc = s[0][g];
#pragma unroll
      for (int u = 1; u < kU; ++u) mc = fmaxf(mc, s[u][g]);
      for (int o = lpk; o < 32; o <<= 1) mc = fmaxf(mc, __shfl_xor_sync(0xffffffffu, mc, o));
      const float mn = fmaxf(r.m[g], mc);
      const float ref = mn == -INFINITY ? 0.0f : mn;
      const float alpha = exp2f(r.m[g] - ref);
      r.m[g] = mn;
      float ls = r.l[g] * alpha;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        s[u][g] = exp2f(s[u][g] - ref);
        ls += s[u][g];
      }
      r.l[g] = ls;
#pragma unroll
      for (int e = 0; e < 8; ++e) r.o[g][e] *= alpha;
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      float vf[8];
      ToFloat8(vr[u], vf);
#pragma unroll
      for (int g = 0; g < HB; ++g)
#pragma unroll
        for (int e = 0; e < 8; ++e) r.o[g][e] = fmaf(s[u][g], vf[e], r.o[g][e]);
    }
  }
  // Merge the warp's key groups (same max everywhere: a plain sum).
  for (int o = lpk; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < HB; ++g) {
      r.l[g] += __shfl_xor_sync(0xffffffffu, r.l[g], o);
#pragma unroll
      for (int e = 0; e < 8; ++e) r.o[g][e] += __shfl_xor_sync(0xffffffffu, r.o[g][e], o);
    }
  }
}

// Merges the block's warps (each warp's state in smem, a part of HB * (hd + 2) floats each) and
// hands element i < ng * hd of head g = i / hd to emit(i, g, o, max, sum), o unnormalised.
template <int HB, typename Emit>
__device__ __forceinline__ void CombineWarps(float* smem, const Lanes& ln, const Acc<HB>& r, int hd, int ng,
                                             Emit emit) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int part = HB * (hd + 2);  // one partial: o [HB][hd], m [HB], l [HB]
  float* wp = smem + warp * part;
  if (ln.sub == 0 && ln.dim_ok) {
#pragma unroll
    for (int g = 0; g < HB; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e) wp[g * hd + ln.d0 + e] = r.o[g][e];
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < HB; ++g) {
      wp[HB * hd + g] = r.m[g];
      wp[HB * hd + HB + g] = r.l[g];
    }
  }
  __syncthreads();
  for (int i = tid; i < ng * hd; i += kThreads) {
    const int g = i / hd;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, smem[w * part + HB * hd + g]);
    float o = 0.0f, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = PartWeight(smem[w * part + HB * hd + g], mx);
      o += wt * smem[w * part + i];
      sum += wt * smem[w * part + HB * hd + HB + g];
    }
    emit(i, g, o, mx, sum);
  }
}

// HB = 4 fits 168 registers (3 blocks per SM) without spills; HB = 8 needs up to 255.
template <typename T, int HB>
__global__ void __launch_bounds__(kThreads, HB == 4 ? 3 : 1) DecodeKernel(AttnArgs a, int C, int hchunks) {
  PdlWait();
  PdlTrigger();
  extern __shared__ float smem[];
  const int hd = a.head_dim, hq = a.n_heads, G = hq / a.n_kv_heads;
  const int t = blockIdx.x / C, rank = blockIdx.x - t * C;
  const int kvh = blockIdx.y / hchunks, h0 = kvh * G + (blockIdx.y - kvh * hchunks) * HB;
  const int ng = min(HB, (kvh + 1) * G - h0);
  const int tid = threadIdx.x;
  const Lanes ln = LanesOf(hd, tid & 31);
  float q[HB][8];
  LoadQ<T, HB>(a, ln, t, h0, ng, q);

  const int seq = a.n_tokens == a.n_seqs && a.max_q_len == 1 ? t : SeqOf(a.q_start, a.n_seqs, t);
  const int last = a.positions[t];
  const int first = a.sliding_window > 0 ? max(0, last - a.sliding_window + 1) : 0;
  const int per = ((last - first + C) / C + 15) & ~15;  // keys per rank, whole pages where it can
  const int jb = first + rank * per, je = min(jb + per, last + 1);
  Acc<HB> r;
  AttendKeys<T, HB>(a, ln, q, h0, ng, seq, kvh, jb, je, last, r);

  // Merge the warps; with one rank this is the output.
  T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * hq + h0) * hd;
  float* bp = smem + kWarps * HB * (hd + 2);
  CombineWarps<HB>(smem, ln, r, hd, ng, [&](int i, int g, float o, float mx, float sum) {
    if (C == 1) {
      out[i] = FromF32<T>(o / sum);
    } else {
      bp[i] = o;
      if (i % hd == 0) {
        bp[HB * hd + g] = mx;
        bp[HB * hd + HB + g] = sum;
      }
    }
  });
  if (C == 1) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Merge the ranks of the cluster through distributed shared memory, each rank a slice.
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  for (int i = rank * kThreads + tid; i < ng * hd; i += C * kThreads) {
    const int g = i / hd;
    float mr[kMaxCluster], lr[kMaxCluster], orr[kMaxCluster];
    float mx = -INFINITY;
#pragma unroll
    for (int r = 0; r < kMaxCluster; ++r) {
      if (r < C) {
        const float* rp = cluster.map_shared_rank(bp, r);
        mr[r] = rp[HB * hd + g];
        lr[r] = rp[HB * hd + HB + g];
        orr[r] = rp[i];
        mx = fmaxf(mx, mr[r]);
      }
    }
    float o = 0.0f, sum = 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxCluster; ++r) {
      if (r < C) {
        const float wt = PartWeight(mr[r], mx);
        o += wt * orr[r];
        sum += wt * lr[r];
      }
    }
    out[i] = FromF32<T>(o / sum);
  }
  cluster.sync();  // no rank may leave while another still reads its shared memory
#endif
}

// Keys token t attends to (its window, or its whole prefix).
__device__ __forceinline__ int KeysOf(const AttnArgs& a, int t) {
  const int last = a.positions[t];
  return a.sliding_window > 0 ? min(last + 1, a.sliding_window) : last + 1;
}

// Stream-K decode (one query token per sequence, token t = sequence t): the rows (token t, head
// block y), t-major, laid end to end form one list of W keys; the grid is exactly the resident
// blocks, and block b streams keys [b * per, (b + 1) * per) of that list, whatever rows they fall
// in, so every block does the same work at any mix of lengths (no wave tail). A row wholly inside
// a block is written out; a row cut by a block boundary leaves a partial (o, max, sum) per piece
// in `parts` (2 slots per block: its first piece and its last) and counts itself in counters[row];
// the piece that completes the count merges them and resets the counter to 0 for the next launch.
template <typename T, int HB>
__global__ void __launch_bounds__(kThreads, HB == 4 ? 3 : 1)
    StreamKernel(AttnArgs a, int hchunks, float* parts, int* counters) {
  PdlWait();
  PdlTrigger();
  extern __shared__ float smem[];
  __shared__ long long s_scan[kThreads];
  __shared__ long long s_at[2];  // token holding this block's first key, and where its rows start
  __shared__ int s_last;
  const int hd = a.head_dim, hq = a.n_heads, G = hq / a.n_kv_heads, Y = a.n_kv_heads * hchunks;
  const int tid = threadIdx.x, n = a.n_tokens;
  const Lanes ln = LanesOf(hd, tid & 31);

  // Prefix sums of the tokens' key counts: thread i owns tokens [i * span, (i + 1) * span).
  const int span = (n + kThreads - 1) / kThreads;
  const int t_lo = min(n, tid * span), t_hi = min(n, t_lo + span);
  long long mine = 0;
  for (int t = t_lo; t < t_hi; ++t) mine += KeysOf(a, t);
  s_scan[tid] = mine;
  __syncthreads();
  for (int o = 1; o < kThreads; o <<= 1) {  // inclusive scan (Hillis-Steele)
    const long long v = tid >= o ? s_scan[tid - o] : 0;
    __syncthreads();
    s_scan[tid] += v;
    __syncthreads();
  }
  const long long W = s_scan[kThreads - 1] * Y;
  const long long per = ((W + gridDim.x - 1) / gridDim.x + 63) & ~63LL;
  const long long start = blockIdx.x * per, end = min(start + per, W);
  if (start >= W) return;  // uniform over the block
  {
    long long at = (s_scan[tid] - mine) * Y;  // first key of thread tid's tokens
    if (start >= at && start < at + mine * Y) {
      for (int t = t_lo; t < t_hi; ++t) {
        const long long len = static_cast<long long>(KeysOf(a, t)) * Y;
        if (start < at + len) {
          s_at[0] = t;
          s_at[1] = at;
          break;
        }
        at += len;
      }
    }
  }
  __syncthreads();
  int t = static_cast<int>(s_at[0]);
  long long row0 = s_at[1];  // first key of token t's rows
  int nt = KeysOf(a, t);
  long long cur = start;
  bool first_piece = true;
  while (cur < end) {
    const int y = static_cast<int>((cur - row0) / nt);
    const long long rb = row0 + static_cast<long long>(y) * nt, re = rb + nt;  // this row's keys
    const int k0 = static_cast<int>(cur - rb), k1 = static_cast<int>(min(end, re) - rb);
    const int kvh = y / hchunks, h0 = kvh * G + (y - kvh * hchunks) * HB, ng = min(HB, (kvh + 1) * G - h0);
    float q[HB][8];
    LoadQ<T, HB>(a, ln, t, h0, ng, q);
    const int last = a.positions[t], first = last + 1 - nt;
    Acc<HB> r;
    AttendKeys<T, HB>(a, ln, q, h0, ng, t, kvh, first + k0, first + k1, last, r);
    T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * hq + h0) * hd;
    const int part = HB * (hd + 2);
    if (k0 == 0 && k1 == nt) {
      CombineWarps<HB>(smem, ln, r, hd, ng,
                       [&](int i, int, float o, float, float sum) { out[i] = FromF32<T>(o / sum); });
    } else {
      float* pp = parts + (2LL * blockIdx.x + (first_piece ? 0 : 1)) * part;
      CombineWarps<HB>(smem, ln, r, hd, ng, [&](int i, int g, float o, float mx, float sum) {
        pp[i] = o;
        if (i % hd == 0) {
          pp[HB * hd + g] = mx;
          pp[HB * hd + HB + g] = sum;
        }
      });
      // Blocks b_lo .. b_hi hold the row's pieces; b_lo's is its last piece unless the row
      // starts exactly at the block's start.
      const long long b_lo = rb / per, b_hi = (re - 1) / per;
      int* counter = counters + static_cast<int64_t>(t) * Y + y;
      __threadfence();
      __syncthreads();
      if (tid == 0) {
        s_last = atomicAdd(counter, 1) == static_cast<int>(b_hi - b_lo);
        if (s_last) *counter = 0;
      }
      __syncthreads();
      if (s_last) {
        __threadfence();
        for (int i = tid; i < ng * hd; i += kThreads) {
          const int g = i / hd;
          float mx = -INFINITY;
          for (long long b = b_lo; b <= b_hi; ++b) {
            const float* rp = parts + (2 * b + (b == b_lo && rb != b_lo * per ? 1 : 0)) * part;
            mx = fmaxf(mx, __ldcg(rp + HB * hd + g));
          }
          float o = 0.0f, sum = 0.0f;
          for (long long b = b_lo; b <= b_hi; ++b) {
            const float* rp = parts + (2 * b + (b == b_lo && rb != b_lo * per ? 1 : 0)) * part;
            const float wt = PartWeight(__ldcg(rp + HB * hd + g), mx);
            o += wt * __ldcg(rp + i);
            sum += wt * __ldcg(rp + HB * hd + HB + g);
          }
          out[i] = FromF32<T>(o / sum);
        }
      }
    }
    __syncthreads();  // smem is reused by the next piece
    first_piece = false;
    cur = min(end, re);
    if (cur == re && y + 1 == Y && cur < end) {
      row0 = re;
      nt = KeysOf(a, ++t);
    }
  }
}

// Largest cluster this kernel may use: 16 (non-portable) where the device can co-schedule it.
template <typename T, int HB>
int MaxCluster() {
  static const int c = [] {
    if (!ClustersAvailable()) return 1;
    if (kMaxCluster <= 8) return kMaxCluster;
    if (cudaFuncSetAttribute(DecodeKernel<T, HB>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
      cudaGetLastError();
      return 8;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(kMaxCluster, 1, 1);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = SmemBytes(HB, kMaxHeadDim);
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = kMaxCluster;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, DecodeKernel<T, HB>, &cfg) != cudaSuccess || n < 1) {
      cudaGetLastError();
      return 8;
    }
    return kMaxCluster;
  }();
  return c;
}

// Blocks of the decode (kStream false) or stream-K kernel resident at once on the device.
template <typename T, int HB, bool kStream>
int ResidentSlots(int head_dim, int num_sms) {
  static int per_sm[kMaxHeadDim / 8 + 1] = {};  // by head_dim / 8; 0 = not asked yet
  int& n = per_sm[head_dim / 8];
  if (n == 0) {
    const void* fn = kStream ? reinterpret_cast<const void*>(StreamKernel<T, HB>)
                             : reinterpret_cast<const void*>(DecodeKernel<T, HB>);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, kThreads, SmemBytes(HB, head_dim)) != cudaSuccess ||
        n < 1) {
      cudaGetLastError();
      n = 1;
    }
  }
  return n * num_sms;
}

int HeadBlock(const AttnArgs& a) { return (a.n_heads / a.n_kv_heads) % 8 == 0 ? 8 : 4; }
int HeadChunks(const AttnArgs& a) {
  const int g = a.n_heads / a.n_kv_heads, hb = HeadBlock(a);
  return (g + hb - 1) / hb;
}

// Under kAuto, stream-K takes decode-only batches of at least 32 (token, head block) rows and
// 2^17 row-keys (max_seq_len, an upper bound, stands for the lengths). On the H100
// (decode_attention_bench --split, 2026-11-25) it was faster from there on, e.g. batch 8 x 4096
// keys 52.0 -> 61.7% of copy, batch 100 x 3072 79.8 -> 90.1%, ragged batch 64 x [2048, 4096]
// 74.5 -> 86.9%; below, the clusters won (batch 1 x 4096: 20.3 us against 40.9 us per layer).
bool UsesStream(const AttnArgs& a, int /*num_sms*/, DecodeSplit mode) {
  if (mode == DecodeSplit::kClusters || a.max_q_len != 1 || a.n_tokens != a.n_seqs) return false;
  if (mode == DecodeSplit::kStreamK) return true;
  const int64_t rows = static_cast<int64_t>(a.n_tokens) * a.n_kv_heads * HeadChunks(a);
  return rows >= 32 && rows * std::max(a.max_seq_len, 1) >= (int64_t{1} << 17);
}

// Stream-K workspace: 2 partial slots per resident block (size fixed by dtype and head shape),
// then one counter per row, capacity rounded up to a power of two of tokens (>= 256).
struct StreamLayout {
  int grid;
  size_t parts_bytes, counters_bytes;
};
StreamLayout StreamLayoutOf(const AttnArgs& a, ElemType t, int num_sms) {
  StreamLayout l{};
  const int hb = HeadBlock(a);
  KILN_DISPATCH_FLOAT(t, T, {
    l.grid = hb == 8 ? ResidentSlots<T, 8, true>(a.head_dim, num_sms) : ResidentSlots<T, 4, true>(a.head_dim, num_sms);
  });
  l.parts_bytes = (sizeof(float) * 2 * l.grid * hb * (a.head_dim + 2) + 255) & ~size_t{255};
  int64_t cap = 256;
  while (cap < a.n_tokens) cap *= 2;
  l.counters_bytes = sizeof(int) * static_cast<size_t>(cap) * a.n_kv_heads * HeadChunks(a);
  return l;
}

template <typename T, int HB>
cudaError_t LaunchStream(const AttnArgs& a, const StreamLayout& l, void* ws, cudaStream_t s) {
  float* parts = static_cast<float*>(ws);
  int* counters = reinterpret_cast<int*>(static_cast<char*>(ws) + l.parts_bytes);
  return LaunchPdl(StreamKernel<T, HB>, dim3(l.grid), dim3(kThreads), SmemBytes(HB, a.head_dim), s, a, HeadChunks(a),
                   parts, counters);
}

template <typename T, int HB>
cudaError_t Launch(const AttnArgs& a, int num_sms, cudaStream_t s) {
  const Plan p = MakePlan(a, num_sms, HB, MaxCluster<T, HB>(), ResidentSlots<T, HB, false>(a.head_dim, num_sms));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(a.n_tokens) * p.cluster, a.n_kv_heads * p.hchunks, 1);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = SmemBytes(HB, a.head_dim);
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.numAttrs = 1;
  if (p.cluster > 1) {
    attr[1].id = cudaLaunchAttributeClusterDimension;
    attr[1].val.clusterDim.x = p.cluster;
    attr[1].val.clusterDim.y = 1;
    attr[1].val.clusterDim.z = 1;
    cfg.numAttrs = 2;
  }
  cfg.attrs = attr;
  return cudaLaunchKernelEx(&cfg, DecodeKernel<T, HB>, a, p.cluster, p.hchunks);
}

bool ValidShape(const AttnArgs& a) {
  return a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0 && a.head_dim > 0 && a.head_dim % 8 == 0 &&
         a.head_dim <= kMaxHeadDim && a.block_size > 0;
}

}  // namespace

size_t DecodeAttentionWorkspaceBytes(const AttnArgs& a, ElemType t, int num_sms, DecodeSplit mode) {
  if (a.n_tokens <= 0 || !ValidShape(a) || !UsesStream(a, num_sms, mode)) return 0;
  const StreamLayout l = StreamLayoutOf(a, t, num_sms);
  return l.parts_bytes + l.counters_bytes;
}

cudaError_t LaunchDecodeAttention(const AttnArgs& a, ElemType t, void* workspace, int num_sms, cudaStream_t s,
                                  DecodeSplit mode) {
  if (a.n_tokens <= 0) return cudaSuccess;
  if (!ValidShape(a)) return cudaErrorInvalidValue;
  const bool hb8 = HeadBlock(a) == 8;
  cudaError_t e = cudaSuccess;
  if (workspace && UsesStream(a, num_sms, mode)) {
    const StreamLayout l = StreamLayoutOf(a, t, num_sms);
    KILN_DISPATCH_FLOAT(t, T,
                        { e = hb8 ? LaunchStream<T, 8>(a, l, workspace, s) : LaunchStream<T, 4>(a, l, workspace, s); });
    return e;
  }
  KILN_DISPATCH_FLOAT(t, T, { e = hb8 ? Launch<T, 8>(a, num_sms, s) : Launch<T, 4>(a, num_sms, s); });
  return e;
}

}  // namespace kiln::cuda
