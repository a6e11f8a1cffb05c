// The host sampling chain (src/sampling/sampler.cpp) on the device: penalties -> temperature ->
// top-k -> top-p -> min-p -> seeded draw (rng.h, the same stream), plus the raw log-softmax
// logprobs, so a sampled step copies back only ids. One 1024-thread block per row.
//
// Ranking everywhere is the host's: higher logit first, lower id on ties (NaN counts as -inf).
// top-k and top-p are "smallest best-first prefix whose count / weight sum reaches a target":
// a radix select over the logits' order-preserving keys (11 + 11 + 10 bits) finds the bucket
// where the prefix sum crosses the target (bucket weights summed in 2^-46 fixed point, so the
// sums are order-independent); once the whole prefix (or only the crossing bucket) has at most
// kCap candidates they are sorted in shared memory and scanned. When the kept set is in shared
// memory the draw is done there (sorted by id); otherwise one pass over the row in id order.
// Weights are expf((l - max) / T) in fp32 as on the host (CUDA expf differs from glibc by an ulp
// or two: decisions can differ only where the host's own lies within float rounding of a bound).
#include <algorithm>
#include <climits>
#include <cstdlib>

#include "backend/cuda/kernels/common.cuh"
#include "backend/cuda/kernels/sampling.h"
#include "backend/cuda/kernels/sampling_split.cuh"
#include "sampling/rng.h"

namespace kiln::cuda {
namespace {

using namespace sampling;  // NOLINT: the shared helpers and the split passes

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 2048;
constexpr double kMassScale = 70368744177664.0;  // 2^46
constexpr int kUnroll = 8;

struct Smem {
  int cnt[kBins];
  unsigned long long mass[kBins];
  float cl[kCap];
  int cid[kCap];
  unsigned long long wbuf[kWarps][32];
  double red[kWarps];
  float redf[kWarps];
  int redi[kWarps];
  int n_col, pos, result;
  double before;
};

// f(j, valid, l) over the row with kUnroll loads in flight per thread; every thread of the
// block runs the same number of iterations (f may use warp collectives).
template <class F>
__device__ __forceinline__ void ForRow(const float* __restrict__ x, int V, F&& f) {
  for (int base = 0; base < V; base += kUnroll * kThreads) {
    float v[kUnroll];
#pragma unroll
    for (int i = 0; i < kUnroll; ++i) {
      const int j = base + i * kThreads + threadIdx.x;
      v[i] = j < V ? x[j] : -INFINITY;
    }
#pragma unroll
    for (int i = 0; i < kUnroll; ++i) {
      const int j = base + i * kThreads + threadIdx.x;
      f(j, j < V, Clean(v[i]));
    }
  }
}

__device__ double BlockSumD(double v, Smem& s) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) s.red[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = 0.0;
  for (int w = 0; w < kWarps; ++w) t += s.red[w];
  return t;
}

// Block argmax by (value desc, id asc); every thread gets the result.
__device__ void BlockArgmax(float& bv, int& bi, Smem& s) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, bv, o);
    const int oi = __shfl_xor_sync(kFull, bi, o);
    if (Better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    s.redf[threadIdx.x >> 5] = bv;
    s.redi[threadIdx.x >> 5] = bi;
  }
  __syncthreads();
  for (int w = 0; w < kWarps; ++w)
    if (Better(s.redf[w], s.redi[w], bv, bi)) {
      bv = s.redf[w];
      bi = s.redi[w];
    }
}

// Positions 2t and 2t+1 hold this thread's values. Returns the first position whose inclusive
// prefix sum reaches target (>=, or > when strict), or -1; *before = the sum before it.
__device__ int FirstReach(double v0, double v1, double target, bool strict, Smem& s, double* before) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double incl = v0 + v1;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += y;
  }
  double prev = __shfl_up_sync(kFull, incl, 1);
  if (lane == 0) prev = 0.0;
  __syncthreads();
  if (lane == 31) s.red[warp] = incl;
  if (threadIdx.x == 0) s.pos = INT_MAX;
  __syncthreads();
  double off = 0.0;
  for (int w = 0; w < warp; ++w) off += s.red[w];
  const double e0 = off + prev, i0 = e0 + v0, i1 = i0 + v1;
  const bool h0 = strict ? i0 > target : i0 >= target;
  const bool h1 = strict ? i1 > target : i1 >= target;
  const int mine = h0 ? 2 * static_cast<int>(threadIdx.x) : h1 ? 2 * static_cast<int>(threadIdx.x) + 1 : INT_MAX;
  if (mine != INT_MAX) atomicMin(&s.pos, mine);
  __syncthreads();
  const int p = s.pos;
  if (p != INT_MAX && (p >> 1) == static_cast<int>(threadIdx.x)) s.before = (p & 1) ? i0 : e0;
  __syncthreads();
  *before = p == INT_MAX ? 0.0 : s.before;
  return p == INT_MAX ? -1 : p;
}

// Appends (l, j) where ok to s.cl/s.cid (warp-aggregated); entries past kCap are dropped.
__device__ __forceinline__ void Append(bool ok, float l, int j, Smem& s) {
  const unsigned b = __ballot_sync(kFull, ok);
  if (!b) return;
  const int lane = threadIdx.x & 31;
  int base = 0;
  if (lane == 0) base = atomicAdd(&s.n_col, __popc(b));
  base = __shfl_sync(kFull, base, 0);
  if (ok) {
    const int p = base + __popc(b & ((1u << lane) - 1u));
    if (p < kCap) {
      s.cl[p] = l;
      s.cid[p] = j;
    }
  }
}

// Bitonic sort of s.cl/s.cid[0, n): best first (by_id false) or ascending id (by_id true).
__device__ void SortList(int n, bool by_id, Smem& s) {
  int size = 1;
  while (size < n) size <<= 1;
  for (int i = n + threadIdx.x; i < size; i += kThreads) {
    s.cl[i] = -INFINITY;
    s.cid[i] = INT_MAX;
  }
  __syncthreads();
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < size; i += kThreads) {
        const int o = i ^ j;
        if (o > i) {
          const bool first_i = by_id ? s.cid[i] < s.cid[o] : Better(s.cl[i], s.cid[i], s.cl[o], s.cid[o]);
          const bool up = (i & k) == 0;
          if (up != first_i) {
            const float tl = s.cl[i];
            const int ti = s.cid[i];
            s.cl[i] = s.cl[o];
            s.cid[i] = s.cid[o];
            s.cl[o] = tl;
            s.cid[o] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
}

struct Selected {
  bool all = true;    // the target is not reached: every candidate is in
  Cut cut;            // else: the prefix ends at cut
  int list_end = -1;  // >= 0: s.cl/s.cid[0, list_end] is the whole prefix, best first
};

// The smallest best-first prefix of the candidates (cand(j, l)) whose value sum (1 each, or
// the weight when `mass`) reaches target; frac >= 0: target = frac * (the candidates' total).
template <class Cand>
__device__ Selected Select(const float* __restrict__ x, int V, Cand cand, bool mass, double target, double frac,
                           const Weights& wt, Smem& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kShift[3] = {21, 10, 0}, kWidth[3] = {11, 11, 10};
  uint32_t prefix = 0;
  int n_above = 0;    // candidates above the current prefix
  double rem = target;  // what the prefix still needs below the candidates above
  Selected out;
  for (int lvl = 0; lvl < 3; ++lvl) {
    const int shift = kShift[lvl], width = kWidth[lvl], hi = shift + width, nb = 1 << width;
    __syncthreads();  // the previous level's readers of cnt/mass are done
    for (int b = threadIdx.x; b < nb; b += kThreads) {
      s.cnt[b] = 0;
      s.mass[b] = 0;
    }
    __syncthreads();
    ForRow(x, V, [&](int j, bool valid, float l) {
      bool act = false;
      uint32_t bin = 0;
      unsigned long long m = 0;
      if (valid && cand(j, l)) {
        const uint32_t k = Key(l);
        if (lvl == 0 || (k >> hi) == prefix) {
          act = true;
          bin = (k >> shift) & static_cast<uint32_t>(nb - 1);
          if (mass) m = static_cast<unsigned long long>(static_cast<double>(wt.W(l)) * kMassScale);
        }
      }
      const unsigned am = __ballot_sync(kFull, act);
      if (act) {
        const unsigned peers = __match_any_sync(am, bin);
        const int leader = __ffs(peers) - 1;
        if (mass) s.wbuf[warp][lane] = m;
        __syncwarp(am);
        if (lane == leader) {
          atomicAdd(&s.cnt[bin], __popc(peers));
          if (mass) {
            unsigned long long t = 0;
            for (unsigned p = peers; p; p &= p - 1) t += s.wbuf[warp][__ffs(p) - 1];
            atomicAdd(&s.mass[bin], t);
          }
        }
        __syncwarp(am);
      }
    });
    __syncthreads();
    auto val = [&](int p) -> double {
      if (p >= nb) return 0.0;
      const int b = nb - 1 - p;
      return mass ? static_cast<double>(s.mass[b]) / kMassScale : static_cast<double>(s.cnt[b]);
    };
    const int p0 = 2 * threadIdx.x;
    const double v0 = val(p0), v1 = val(p0 + 1);
    if (lvl == 0 && frac >= 0.0) target = rem = frac * BlockSumD(v0 + v1, s);
    double before = 0.0;
    int p = FirstReach(v0, v1, rem, false, s, &before);
    if (p < 0) {
      if (lvl == 0) return out;  // all candidates
      // Only through rounding: take the last non-empty bucket.
      __syncthreads();
      if (threadIdx.x == 0) s.pos = -1;
      __syncthreads();
      for (int q = threadIdx.x; q < nb; q += kThreads)
        if (s.cnt[nb - 1 - q] > 0) atomicMax(&s.pos, q);
      __syncthreads();
      p = max(s.pos, 0);
      before = 0.0;  // approximate, rounding case only
    }
    const int bin = nb - 1 - p;
    const double above_here = BlockSumD((p0 < p ? s.cnt[nb - 1 - p0] : 0) + (p0 + 1 < p && p0 + 1 < nb ? s.cnt[nb - 2 - p0] : 0), s);
    const int in_bin = s.cnt[bin];
    n_above += static_cast<int>(above_here);
    const double rem_bin = rem - before;
    prefix = lvl == 0 ? static_cast<uint32_t>(bin) : (prefix << width) | static_cast<uint32_t>(bin);
    const bool whole = n_above + in_bin <= kCap;
    if (whole || in_bin <= kCap) {
      const uint32_t lo = prefix << shift;
      if (threadIdx.x == 0) s.n_col = 0;
      __syncthreads();
      ForRow(x, V, [&](int j, bool valid, float l) {
        bool ok = false;
        if (valid && cand(j, l)) {
          const uint32_t k = Key(l);
          ok = whole ? k >= lo : (k >> shift) == prefix;
        }
        Append(ok, l, j, s);
      });
      __syncthreads();
      const int n = min(s.n_col, kCap);
      SortList(n, false, s);
      auto item = [&](int i) -> double {
        if (i >= n) return 0.0;
        return mass ? static_cast<double>(wt.W(s.cl[i])) : 1.0;
      };
      double b2;
      int q = FirstReach(item(p0), item(p0 + 1), whole ? target : rem_bin, false, s, &b2);
      if (q < 0) q = n - 1;
      out.all = false;
      out.cut.l = s.cl[q];
      out.cut.id = s.cid[q];
      out.list_end = whole ? q : -1;
      __syncthreads();
      return out;
    }
    rem = rem_bin;
    if (lvl == 2) {
      // More than kCap candidates share one logit: the c-th of them by id ends the prefix.
      float key_l = __uint_as_float((prefix & 0x80000000u) ? (prefix & 0x7fffffffu) : ~prefix);
      key_l = Clean(key_l);
      const double w = mass ? static_cast<double>(wt.W(key_l)) : 1.0;
      long long c = w > 0.0 ? static_cast<long long>(ceil(rem / w)) : 1;
      c = c < 1 ? 1 : (c > in_bin ? in_bin : c);
      int found = 0;
      if (threadIdx.x == 0) s.result = -1;
      for (int base = 0; base < V; base += kThreads) {
        const int j = base + threadIdx.x;
        float l = -INFINITY;
        bool ok = false;
        if (j < V) {
          l = Clean(x[j]);
          ok = cand(j, l) && Key(l) == prefix;
        }
        const int n = __syncthreads_count(ok);
        if (found + n >= c) {
          const unsigned b = __ballot_sync(kFull, ok);
          if (lane == 0) s.redi[warp] = __popc(b);
          __syncthreads();
          int rank = found;
          for (int w2 = 0; w2 < warp; ++w2) rank += s.redi[w2];
          rank += __popc(b & ((1u << lane) - 1u));
          if (ok && rank + 1 == c) s.result = j;
          __syncthreads();
          break;
        }
        found += n;
      }
      out.all = false;
      out.cut.l = key_l;
      out.cut.id = s.result;
      __syncthreads();
      return out;
    }
  }
  return out;
}

template <typename T>
__global__ void ConvertKernel(float* __restrict__ ws, const T* __restrict__ logits, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    ws[i] = ToF32(logits[i]);
}

__global__ void PenaltyKernel(float* __restrict__ ws, const DevicePenaltyEntry* __restrict__ pens, int n,
                              const DeviceSamplingRow* __restrict__ params, int64_t V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const DevicePenaltyEntry e = pens[i];
  const DeviceSamplingRow& p = params[e.row];
  if (e.token < 0 || e.token >= V) return;
  float& l = ws[e.row * V + e.token];
  const float r = p.repetition_penalty;
  // Host order (sampler.cpp): repetition over the prompt + generated set, then presence and
  // frequency over the generated counts; no FMA contraction, as on the host.
  if (isfinite(r) && r > 0.0f && r != 1.0f) l = l > 0.0f ? __fdiv_rn(l, r) : __fmul_rn(l, r);
  if ((p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && e.count > 0)
    l = __fsub_rn(l, __fadd_rn(__fmul_rn(p.frequency_penalty, static_cast<float>(e.count)), p.presence_penalty));
}

// Raw log-softmax as LogSoftmax (sampler.cpp) computes it, from the row stats.
struct LpStats {
  float m;
  double lse;
  float n_pos_inf;
  __device__ float Lp(float raw, int id) const {
    if (m == -INFINITY) return id == 0 ? 0.0f : -INFINITY;
    if (m == INFINITY) return raw == INFINITY ? -static_cast<float>(log(static_cast<double>(n_pos_inf))) : -INFINITY;
    if (raw != raw) return -INFINITY;
    return static_cast<float>(static_cast<double>(raw) - m - lse);
  }
};
__device__ void StoreStats(float* st, const LpStats& a) {
  const unsigned long long b = __double_as_longlong(a.lse);
  st[0] = a.m;
  st[1] = __uint_as_float(static_cast<uint32_t>(b));
  st[2] = __uint_as_float(static_cast<uint32_t>(b >> 32));
  st[3] = a.n_pos_inf;
}
__device__ LpStats LoadStats(const float* st) {
  LpStats a;
  a.m = st[0];
  a.lse = __longlong_as_double(static_cast<long long>(__float_as_uint(st[1])) |
                               (static_cast<long long>(__float_as_uint(st[2])) << 32));
  a.n_pos_inf = st[3];
  return a;
}

// Stats of the raw row (before penalties) and its top logprobs.
__global__ __launch_bounds__(kThreads, 1) void LogprobKernel(float* __restrict__ ws, const DeviceSamplingRow* params,
                                                             int64_t V64, int64_t rows, int32_t* top_ids,
                                                             float* top_lp) {
  __shared__ Smem s;
  const int r = blockIdx.x, V = static_cast<int>(V64);
  const DeviceSamplingRow p = params[r];
  const int n_top = min(max(p.n_top_logprobs, 0), kMaxDeviceTopLogprobs);
  if (!p.want_logprob && n_top == 0) return;
  const float* x = ws + r * V64;
  float m = -INFINITY;
  int n_inf = 0;
  ForRow(x, V, [&](int, bool valid, float l) {
    if (valid) {
      m = fmaxf(m, l);
      n_inf += l == INFINITY;
    }
  });
  int dummy = 0;
  BlockArgmax(m, dummy, s);
  const double n_pos_inf = BlockSumD(static_cast<double>(n_inf), s);
  double sum = 0.0;
  if (m != -INFINITY && m != INFINITY) {
    ForRow(x, V, [&](int, bool valid, float l) {
      if (valid) sum += static_cast<double>(expf(static_cast<float>(static_cast<double>(l) - m)));
    });
  }
  sum = BlockSumD(sum, s);
  LpStats st{m, m != -INFINITY && m != INFINITY ? log(sum) : 0.0, static_cast<float>(n_pos_inf)};
  if (threadIdx.x == 0) StoreStats(ws + rows * V64 + 4 * r, st);
  if (n_top == 0 || !top_ids || !top_lp) return;
  const Weights none{0.0f, 1.0f};
  const Selected sel =
      Select(x, V, [](int, float) { return true; }, false, static_cast<double>(n_top), -1.0, none, s);
  if (threadIdx.x == 0) s.n_col = 0;
  __syncthreads();
  ForRow(x, V, [&](int j, bool valid, float l) { Append(valid && (sel.all || sel.cut.Has(l, j)), l, j, s); });
  __syncthreads();
  if (threadIdx.x == 0) {
    // Raw values for the logprobs (Clean maps NaN to -inf, whose logprob is -inf too).
    const int n = min(min(s.n_col, kCap), n_top);
    const int n_all = min(s.n_col, kCap);
    float lp[kMaxDeviceTopLogprobs];
    int id[kMaxDeviceTopLogprobs];
    int k = 0;
    for (int i = 0; i < n_all; ++i) {
      const float v = st.Lp(s.cl[i], s.cid[i]);
      const int d = s.cid[i];
      // insertion into the best n by (lp desc, id asc)
      int q = k < n ? k++ : n;
      if (q == n && !(v > lp[n - 1] || (v == lp[n - 1] && d < id[n - 1]))) continue;
      if (q == n) q = n - 1;
      while (q > 0 && (v > lp[q - 1] || (v == lp[q - 1] && d < id[q - 1]))) {
        lp[q] = lp[q - 1];
        id[q] = id[q - 1];
        --q;
      }
      lp[q] = v;
      id[q] = d;
    }
    for (int i = 0; i < k; ++i) {
      top_ids[r * kMaxDeviceTopLogprobs + i] = id[i];
      top_lp[r * kMaxDeviceTopLogprobs + i] = lp[i];
    }
  }
}

// G > 0: the split kernels ran (SplitMax/Threshold/Collect) and their results are used.
__global__ __launch_bounds__(kThreads, 1) void ChainKernel(int32_t* __restrict__ ids, float* __restrict__ ws,
                                                           const DeviceSamplingRow* __restrict__ params, int64_t V64,
                                                           int64_t rows, int G) {
  __shared__ Smem s;
  const int r = blockIdx.x, V = static_cast<int>(V64);
  const DeviceSamplingRow p = params[r];
  const float* x = ws + r * V64;
  float m = -INFINITY;
  int am = INT_MAX;
  const FastRow* fr = G > 0 ? FastRowAt(ws, rows, V64, r) : nullptr;
  int fast_i = -1;
  double fast_total = 0.0;
  if (fr) {
    if (threadIdx.x == 0) {
      const Choice c = Choose(fr, G, p, V64, true);
      s.redf[0] = c.m;
      s.redi[0] = c.am;
      s.pos = c.i;
      s.before = c.total;
    }
    __syncthreads();
    m = s.redf[0];
    am = s.redi[0];
    fast_i = s.pos;
    fast_total = s.before;
    __syncthreads();
  } else {
    ForRow(x, V, [&](int j, bool valid, float l) {
      if (valid && Better(l, j, m, am)) {
        m = l;
        am = j;
      }
    });
    BlockArgmax(m, am, s);
  }
  if (m == -INFINITY || !(p.temperature > 0.0f)) {
    if (threadIdx.x == 0) ids[r] = m == -INFINITY ? 0 : am;
    return;
  }
  const Weights wt{m, p.temperature};
  const float min_p = p.min_p > 0.0f ? fminf(p.min_p, 1.0f) : 0.0f;
  Cut cut;
  int list_end = -1;  // >= 0: the kept prefix is s.cl/s.cid[0, list_end], best first
  bool top_p_done = false;
  const int p0 = 2 * threadIdx.x;
  if (fast_i >= 0) {
    // The kept set lies in the collected up-set: sort it here instead of selecting over the row.
    const int n = min(fr->n_list, kCap);
    for (int i = threadIdx.x; i < n; i += kThreads) {
      s.cl[i] = fr->l[i];
      s.cid[i] = fr->id[i];
    }
    __syncthreads();
    SortList(n, false, s);
    if (p.top_k > 0 && p.top_k < V) {
      list_end = min(p.top_k, n) - 1;
    } else if (p.top_p < 1.0f) {
      auto item = [&](int i) -> double { return i < n ? static_cast<double>(wt.W(s.cl[i])) : 0.0; };
      double before;
      const int q = FirstReach(item(p0), item(p0 + 1), static_cast<double>(p.top_p) * fast_total, false, s, &before);
      list_end = q < 0 ? n - 1 : q;
      top_p_done = true;
    } else {
      list_end = n - 1;
    }
    cut.l = s.cl[list_end];
    cut.id = s.cid[list_end];
    __syncthreads();
  } else if (p.top_k > 0 && p.top_k < V) {
    const Selected sel = Select(
        x, V, [](int, float l) { return l > -INFINITY; }, false, static_cast<double>(p.top_k), -1.0, wt, s);
    if (!sel.all) {
      cut = sel.cut;
      list_end = sel.list_end;
    }
  }
  if (p.top_p < 1.0f && !top_p_done) {
    if (list_end >= 0) {
      auto item = [&](int i) -> double { return i <= list_end ? static_cast<double>(wt.W(s.cl[i])) : 0.0; };
      const double v0 = item(p0), v1 = item(p0 + 1);
      const double target = static_cast<double>(p.top_p) * BlockSumD(v0 + v1, s);
      double before;
      int q = FirstReach(v0, v1, target, false, s, &before);
      if (q >= 0 && q < list_end) list_end = q;
      cut.l = s.cl[list_end];
      cut.id = s.cid[list_end];
      __syncthreads();
    } else {
      const Cut kc = cut;
      const Selected sel = Select(
          x, V, [kc](int j, float l) { return l > -INFINITY && kc.Has(l, j); }, true, 0.0,
          static_cast<double>(p.top_p), wt, s);
      if (!sel.all) {
        cut = sel.cut;
        list_end = sel.list_end;
      }
    }
  }
  const float u = rng::BitsToUnit(rng::DrawBits(p.seed, p.counter));
  if (list_end >= 0) {
    // Draw over the kept prefix in shared memory, in ascending id order as the host walks.
    const int n = list_end + 1;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const float w = wt.W(s.cl[i]);
      if (!(w > 0.0f && w >= min_p)) s.cid[i] = INT_MAX;  // dropped: sorts last
    }
    __syncthreads();
    SortList(n, true, s);
    auto item = [&](int i) -> double {
      return i < n && s.cid[i] != INT_MAX ? static_cast<double>(wt.W(s.cl[i])) : 0.0;
    };
    const double v0 = item(p0), v1 = item(p0 + 1);
    const double total = BlockSumD(v0 + v1, s);
    double before;
    int q = FirstReach(v0, v1, static_cast<double>(u) * total, true, s, &before);
    if (q < 0) {  // rounding: the last kept id
      __syncthreads();
      if (threadIdx.x == 0) s.pos = 0;
      __syncthreads();
      for (int i = threadIdx.x; i < n; i += kThreads)
        if (s.cid[i] != INT_MAX) atomicMax(&s.pos, i);
      __syncthreads();
      q = s.pos;
    }
    if (threadIdx.x == 0) ids[r] = s.cid[q];
    return;
  }
  // Dense draw: each thread owns a contiguous id range of [rlo, rhi), walked in order. Split rows
  // walk only the chunk where the chunks' kept weights (SplitDenseKernel) cross the draw.
  int rlo = 0, rhi = V;
  bool ranged = false;
  double target_rel = 0.0;
  if (fr && fast_i < 0 && list_end < 0 && !(p.top_k > 0 && p.top_k < V) && !(p.top_p < 1.0f) && isfinite(m) &&
      isfinite(p.temperature)) {
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      int last_all = -1;
      for (int g = 0; g < G; ++g) {
        total += fr->part[g].dsum;
        last_all = max(last_all, fr->part[g].dlast);
      }
      const double target = static_cast<double>(u) * total;
      double prefix = 0.0;
      int gs = -1;
      for (int g = 0; g < G; ++g) {
        const double d = fr->part[g].dsum;
        if (d > 0.0 && prefix + d > target) {
          gs = g;
          break;
        }
        prefix += d;
      }
      s.pos = gs;
      s.before = target - prefix;
      s.result = last_all;
    }
    __syncthreads();
    const int gs = s.pos;
    target_rel = s.before;
    const int last_all = s.result;
    __syncthreads();
    if (gs < 0) {  // rounding: the last kept id of the row
      if (threadIdx.x == 0) ids[r] = max(last_all, 0);
      return;
    }
    rlo = static_cast<int>(V64 * gs / G);
    rhi = static_cast<int>(V64 * (gs + 1) / G);
    ranged = true;
  }
  const int chunk = (rhi - rlo + kThreads - 1) / kThreads;
  const int lo = min(rhi, rlo + static_cast<int>(threadIdx.x) * chunk), hi = min(rhi, lo + chunk);
  auto kept_w = [&](int j) -> float {
    const float l = Clean(x[j]);
    if (l == -INFINITY || !cut.Has(l, j)) return 0.0f;
    const float w = wt.W(l);
    return w > 0.0f && w >= min_p ? w : 0.0f;
  };
  double sum = 0.0;
  int last = -1;
  for (int j = lo; j < hi; ++j) {
    const float w = kept_w(j);
    if (w > 0.0f) {
      sum += w;
      last = j;
    }
  }
  const double total = BlockSumD(sum, s);
  const double target = ranged ? target_rel : static_cast<double>(u) * total;
  double before;
  const int q = FirstReach(sum, 0.0, target, true, s, &before);
  if (threadIdx.x == 0) s.result = -1;
  __syncthreads();
  if (q >= 0 && (q >> 1) == static_cast<int>(threadIdx.x)) {
    double cum = before;
    int pick = last;
    for (int j = lo; j < hi; ++j) {
      const float w = kept_w(j);
      if (w > 0.0f) {
        cum += w;
        if (cum > target) {
          pick = j;
          break;
        }
      }
    }
    s.result = pick;
  }
  __syncthreads();
  if (s.result < 0) {  // rounding: the last kept id of the row (of the chunk when ranged)
    int l2 = last;
    for (int o = 16; o > 0; o >>= 1) l2 = max(l2, __shfl_xor_sync(kFull, l2, o));
    if ((threadIdx.x & 31) == 0) atomicMax(&s.result, l2);
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[r] = max(s.result, 0);
}

template <typename T>
__global__ void FinishLogprobKernel(float* __restrict__ out, const int32_t* __restrict__ ids,
                                    const T* __restrict__ logits, const float* __restrict__ stats,
                                    const DeviceSamplingRow* __restrict__ params, int64_t rows, int64_t V) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  float lp = 0.0f;
  const int id = ids[r];
  if (params[r].want_logprob && id >= 0 && id < V) lp = LoadStats(stats + 4 * r).Lp(ToF32(logits[r * V + id]), id);
  out[r] = lp;
}

}  // namespace

cudaError_t LaunchSampleRows(const SampleRowsArgs& a, ElemType t, cudaStream_t s) {
  if (a.rows <= 0) return cudaSuccess;
  if (a.rows > INT_MAX || a.vocab <= 0 || a.vocab > (INT_MAX - 16 * kThreads) || !a.ids || !a.logits || !a.params ||
      !a.workspace || (a.n_penalties > 0 && !a.penalties))
    return cudaErrorInvalidValue;
  const int64_t n = a.rows * a.vocab;
  const unsigned rows = static_cast<unsigned>(a.rows);
  const unsigned conv_blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 132 * 16));
  KILN_DISPATCH_FLOAT(t, T, ConvertKernel<T><<<conv_blocks, 256, 0, s>>>(a.workspace, static_cast<const T*>(a.logits), n));
  if (a.any_logprobs)
    LogprobKernel<<<rows, kThreads, 0, s>>>(a.workspace, a.params, a.vocab, a.rows, a.top_ids, a.top_logprobs);
  if (a.n_penalties > 0)
    PenaltyKernel<<<(a.n_penalties + 255) / 256, 256, 0, s>>>(a.workspace, a.penalties, a.n_penalties, a.params,
                                                              a.vocab);
  // KILN_SAMPLING_SPLIT=1: the row-wide passes over G blocks per row (see SplitMaxKernel).
  const char* split_env = std::getenv("KILN_SAMPLING_SPLIT");
  int G = 0;
  if (split_env && split_env[0] == '1' && a.rows <= 65535) {
    G = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({264 / a.rows, kMaxSplit, a.vocab / 2048})));
    const cudaError_t e = LaunchSplitPasses(a.workspace, a.params, a.rows, a.vocab, G, s);
    if (e != cudaSuccess) return e;
  }
  ChainKernel<<<rows, kThreads, 0, s>>>(a.ids, a.workspace, a.params, a.vocab, a.rows, G);
  if (a.any_logprobs && a.logprobs)
    KILN_DISPATCH_FLOAT(t, T, FinishLogprobKernel<T><<<(rows + 127) / 128, 128, 0, s>>>(
        a.logprobs, a.ids, static_cast<const T*>(a.logits), a.workspace + n, a.params, a.rows, a.vocab));
  return cudaGetLastError();
}

}  // namespace kiln::cuda
