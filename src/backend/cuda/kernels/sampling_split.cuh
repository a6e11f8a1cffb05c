// The split-row passes of the device sampling chain (KILN_SAMPLING_SPLIT=1): their per-row
// results (FastRow) and the choice the chain kernel makes from them.
// SplitMax: per-chunk max/argmax. SplitThreshold: per-chunk count and weight above kNT logit
// thresholds m - delta_i, and the total weight. From these (summed in chunk order, identically in
// every kernel) Choose() picks the threshold closest to m whose up-set provably holds the kept set
// (top-k: >= k ids; top-p alone: >= the target weight; min-p alone: W(t) < min_p) and has at most
// kCap ids; SplitCollect appends that up-set to a per-row list, and the chain kernel sorts the list
// in shared memory instead of running its radix select over the row. No such threshold: the
// chain kernel runs its usual select (it only skips its max pass).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/kernels/sampling.h"
#include "backend/cuda/kernels/sampling_common.cuh"

namespace kiln::cuda::sampling {

constexpr int kNT = 8;
constexpr int kMaxSplit = 32;
constexpr int kSplitThreads = 256;
__device__ __forceinline__ float Delta(int i) {
  return i == 0   ? 0.25f
         : i == 1 ? 0.5f
         : i == 2 ? 1.0f
         : i == 3 ? 2.0f
         : i == 4 ? 4.0f
         : i == 5 ? 8.0f
         : i == 6 ? 16.0f
                  : 32.0f;
}

struct Partial {
  float m;
  int am;
  int cnt[kNT];
  double mass[kNT];
  double total;
  double dsum;  // dense draw: kept weight of the chunk
  int dlast;    // dense draw: last kept id of the chunk (-1: none)
  int pad;
};
struct FastRow {
  Partial part[kMaxSplit];
  int n_list;
  int pad[3];
  float l[kCap];
  int id[kCap];
};
constexpr int64_t kFastRowBytes = 12320;  // 16-byte multiple
static_assert(sizeof(FastRow) <= kFastRowBytes, "FastRow must fit its stride");
static_assert(kFastRowBytes / 4 + 4 + 4 <= kDeviceSamplingRowScratch, "scratch per row");

// The fast region follows the logits [rows, V] and the stats [rows, 4], 16-byte aligned.
__device__ __host__ inline FastRow* FastRowAt(float* ws, int64_t rows, int64_t V, int64_t r) {
  uintptr_t base = reinterpret_cast<uintptr_t>(ws + rows * V + 4 * rows);
  base = (base + 15) & ~static_cast<uintptr_t>(15);
  return reinterpret_cast<FastRow*>(base + r * kFastRowBytes);
}

struct Choice {
  int i = -1;  // threshold index, -1: none
  float t = 0.0f;
  double total = 0.0;
  float m = -INFINITY;
  int am = INT_MAX;
};

// Same result in every kernel and block: partials are read in chunk order.
__device__ inline Choice Choose(const FastRow* fr, int G, const DeviceSamplingRow& p, int64_t V,
                                bool thresholds_ready) {
  Choice c;
  for (int g = 0; g < G; ++g)
    if (Better(fr->part[g].m, fr->part[g].am, c.m, c.am)) {
      c.m = fr->part[g].m;
      c.am = fr->part[g].am;
    }
  if (!thresholds_ready || !isfinite(c.m) || !(p.temperature > 0.0f) || !isfinite(p.temperature)) return c;
  const bool topk = p.top_k > 0 && p.top_k < V;
  const bool topp = p.top_p < 1.0f;
  const float min_p = p.min_p > 0.0f ? fminf(p.min_p, 1.0f) : 0.0f;
  const Weights wt{c.m, p.temperature};
  for (int g = 0; g < G; ++g) c.total += fr->part[g].total;
  for (int i = 0; i < kNT; ++i) {
    int cnt = 0;
    double mass = 0.0;
    for (int g = 0; g < G; ++g) {
      cnt += fr->part[g].cnt[i];
      mass += fr->part[g].mass[i];
    }
    if (cnt > kCap) break;  // larger deltas only add ids
    const float t = c.m - Delta(i);
    bool ok = false;
    if (topk)
      ok = cnt >= p.top_k;
    else if (topp)
      ok = mass >= static_cast<double>(p.top_p) * c.total * (1.0 + 1e-9);
    else if (min_p > 0.0f)
      ok = wt.W(t) < min_p;  // every id below t weighs <= W(t) < min_p
    if (ok) {
      c.i = i;
      c.t = t;
      return c;
    }
  }
  return c;
}

// Rows whose draw runs over every id (no top-k, no top-p, no usable threshold): the chain
// kernel walks only the chunk where the kept weight crosses the draw (SplitDenseKernel sums).
__device__ inline bool DenseAll(const Choice& c, const DeviceSamplingRow& p, int64_t V) {
  return c.i < 0 && isfinite(c.m) && p.temperature > 0.0f && isfinite(p.temperature) && !(p.top_k > 0 && p.top_k < V) &&
         !(p.top_p < 1.0f);
}

// Runs the four split passes over G blocks per row (grid G x rows) before the chain kernel.
cudaError_t LaunchSplitPasses(float* ws, const DeviceSamplingRow* params, int64_t rows, int64_t V, int G,
                              cudaStream_t s);

}  // namespace kiln::cuda::sampling
