// The split-row passes of the device sampling chain: see sampling_split.cuh.
#include "backend/cuda/kernels/sampling_split.cuh"

namespace kiln::cuda::sampling {
namespace {

__device__ void SmallBlockArgmax(float& bv, int& bi, float* sv, int* si) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, bv, o);
    const int oi = __shfl_xor_sync(kFull, bi, o);
    if (Better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  if ((threadIdx.x & 31) == 0) {
    sv[threadIdx.x >> 5] = bv;
    si[threadIdx.x >> 5] = bi;
  }
  __syncthreads();
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w)
    if (Better(sv[w], si[w], bv, bi)) {
      bv = sv[w];
      bi = si[w];
    }
}

__global__ __launch_bounds__(kSplitThreads) void SplitMaxKernel(float* __restrict__ ws, int64_t rows, int64_t V,
                                                                int G) {
  __shared__ float sv[kSplitThreads / 32];
  __shared__ int si[kSplitThreads / 32];
  const int g = blockIdx.x;
  const int64_t r = blockIdx.y;
  const float* x = ws + r * V;
  const int64_t lo = V * g / G, hi = V * (g + 1) / G;
  float m = -INFINITY;
  int am = INT_MAX;
#pragma unroll 4
  for (int64_t j = lo + threadIdx.x; j < hi; j += kSplitThreads) {
    const float l = Clean(x[j]);
    if (Better(l, static_cast<int>(j), m, am)) {
      m = l;
      am = static_cast<int>(j);
    }
  }
  SmallBlockArgmax(m, am, sv, si);
  FastRow* fr = FastRowAt(ws, rows, V, r);
  if (threadIdx.x == 0) {
    fr->part[g].m = m;
    fr->part[g].am = am;
    if (g == 0) fr->n_list = 0;
  }
}

__global__ __launch_bounds__(kSplitThreads) void SplitThresholdKernel(float* __restrict__ ws,
                                                                      const DeviceSamplingRow* __restrict__ params,
                                                                      int64_t rows, int64_t V, int G) {
  __shared__ double sd[kSplitThreads / 32][kNT + 1];
  __shared__ int sc[kSplitThreads / 32][kNT];
  __shared__ float s_m;
  const int g = blockIdx.x;
  const int64_t r = blockIdx.y;
  const DeviceSamplingRow p = params[r];
  FastRow* fr = FastRowAt(ws, rows, V, r);
  if (threadIdx.x == 0) s_m = Choose(fr, G, p, V, false).m;
  __syncthreads();
  const float m = s_m;
  if (!isfinite(m) || !(p.temperature > 0.0f) || !isfinite(p.temperature)) return;
  const Weights wt{m, p.temperature};
  const bool need_mass = p.top_p < 1.0f;
  float t[kNT];
#pragma unroll
  for (int i = 0; i < kNT; ++i) t[i] = m - Delta(i);
  int cnt[kNT];
  double mass[kNT];
#pragma unroll
  for (int i = 0; i < kNT; ++i) {
    cnt[i] = 0;
    mass[i] = 0.0;
  }
  double total = 0.0;
  const float* x = ws + r * V;
  const int64_t lo = V * g / G, hi = V * (g + 1) / G;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kSplitThreads) {
    const float l = Clean(x[j]);
    const double w = need_mass ? static_cast<double>(wt.W(l)) : 0.0;
    total += w;
#pragma unroll
    for (int i = 0; i < kNT; ++i)
      if (l >= t[i]) {
        ++cnt[i];
        mass[i] += w;
      }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < kNT; ++i) {
    for (int o = 16; o > 0; o >>= 1) {
      cnt[i] += __shfl_xor_sync(kFull, cnt[i], o);
      mass[i] += __shfl_xor_sync(kFull, mass[i], o);
    }
  }
  for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(kFull, total, o);
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < kNT; ++i) {
      sc[warp][i] = cnt[i];
      sd[warp][i] = mass[i];
    }
    sd[warp][kNT] = total;
  }
  __syncthreads();
  if (threadIdx.x <= kNT) {
    const int i = threadIdx.x;
    double d = 0.0;
    int c = 0;
    for (int w = 0; w < kSplitThreads / 32; ++w) {
      d += sd[w][i];
      if (i < kNT) c += sc[w][i];
    }
    if (i < kNT) {
      fr->part[g].cnt[i] = c;
      fr->part[g].mass[i] = d;
    } else {
      fr->part[g].total = d;
    }
  }
}

__global__ __launch_bounds__(kSplitThreads) void SplitCollectKernel(float* __restrict__ ws,
                                                                    const DeviceSamplingRow* __restrict__ params,
                                                                    int64_t rows, int64_t V, int G) {
  __shared__ int s_i;
  __shared__ float s_t;
  const int g = blockIdx.x;
  const int64_t r = blockIdx.y;
  FastRow* fr = FastRowAt(ws, rows, V, r);
  if (threadIdx.x == 0) {
    const Choice c = Choose(fr, G, params[r], V, true);
    s_i = c.i;
    s_t = c.t;
  }
  __syncthreads();
  if (s_i < 0) return;
  const float t = s_t;
  const float* x = ws + r * V;
  const int64_t lo = V * g / G, hi = V * (g + 1) / G;
  const int lane = threadIdx.x & 31;
  for (int64_t base = lo; base < hi; base += kSplitThreads) {
    const int64_t j = base + threadIdx.x;
    const float l = j < hi ? Clean(x[j]) : -INFINITY;
    const bool ok = j < hi && l >= t;
    const unsigned b = __ballot_sync(kFull, ok);
    if (!b) continue;
    int pos = 0;
    if (lane == 0) pos = atomicAdd(&fr->n_list, __popc(b));
    pos = __shfl_sync(kFull, pos, 0) + __popc(b & ((1u << lane) - 1u));
    if (ok && pos < kCap) {
      fr->l[pos] = l;
      fr->id[pos] = static_cast<int>(j);
    }
  }
}

__global__ __launch_bounds__(kSplitThreads) void SplitDenseKernel(float* __restrict__ ws,
                                                                  const DeviceSamplingRow* __restrict__ params,
                                                                  int64_t rows, int64_t V, int G) {
  __shared__ double sd[kSplitThreads / 32];
  __shared__ int si[kSplitThreads / 32];
  __shared__ float s_m;
  __shared__ int s_ok;
  const int g = blockIdx.x;
  const int64_t r = blockIdx.y;
  const DeviceSamplingRow p = params[r];
  FastRow* fr = FastRowAt(ws, rows, V, r);
  if (threadIdx.x == 0) {
    const Choice c = Choose(fr, G, p, V, true);
    s_m = c.m;
    s_ok = DenseAll(c, p, V);
  }
  __syncthreads();
  if (!s_ok) return;
  const Weights wt{s_m, p.temperature};
  const float min_p = p.min_p > 0.0f ? fminf(p.min_p, 1.0f) : 0.0f;
  const float* x = ws + r * V;
  const int64_t lo = V * g / G, hi = V * (g + 1) / G;
  double sum = 0.0;
  int last = -1;
  for (int64_t j = lo + threadIdx.x; j < hi; j += kSplitThreads) {
    const float l = Clean(x[j]);
    if (l == -INFINITY) continue;
    const float w = wt.W(l);
    if (w > 0.0f && w >= min_p) {
      sum += w;
      last = static_cast<int>(j);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(kFull, sum, o);
    last = max(last, __shfl_xor_sync(kFull, last, o));
  }
  if ((threadIdx.x & 31) == 0) {
    sd[threadIdx.x >> 5] = sum;
    si[threadIdx.x >> 5] = last;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    int l2 = -1;
    for (int w = 0; w < kSplitThreads / 32; ++w) {
      t += sd[w];
      l2 = max(l2, si[w]);
    }
    fr->part[g].dsum = t;
    fr->part[g].dlast = l2;
  }
}

}  // namespace

cudaError_t LaunchSplitPasses(float* ws, const DeviceSamplingRow* params, int64_t rows, int64_t V, int G,
                              cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(G), static_cast<unsigned>(rows));
  SplitMaxKernel<<<grid, kSplitThreads, 0, s>>>(ws, rows, V, G);
  SplitThresholdKernel<<<grid, kSplitThreads, 0, s>>>(ws, params, rows, V, G);
  SplitCollectKernel<<<grid, kSplitThreads, 0, s>>>(ws, params, rows, V, G);
  SplitDenseKernel<<<grid, kSplitThreads, 0, s>>>(ws, params, rows, V, G);
  return cudaGetLastError();
}

}  // namespace kiln::cuda::sampling
