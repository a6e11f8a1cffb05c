// Decode GEMV microbenchmark: copy bandwidth, our streaming GEMV and cuBLASLt on the
// Llama-3-8B layer shapes at M = 1, 8, 16, 32, 64 (bf16, fp32 accumulation). Decode attention
// has its own benchmark (decode_attention_bench.cu).
//
//   kiln_bench_gemv [--iters N]
//
// Bandwidth = weight bytes / time (activations and outputs are < 0.5% here). Each shape is
// rotated over enough weight copies (>= 256 MiB) that L2 (50 MiB) never holds them; times are
// medians of CUDA-event-timed passes after warm-up.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/kernels/kernels.h"
#include "bench_util.h"

using namespace kiln::cuda;


namespace {

int g_iters = 20;

// Median milliseconds of one call of `fn(rep)` (fn is called `per` times per timed pass).
double TimeMs(cudaStream_t s, int per, const std::function<void(int)>& fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < per * 2; ++i) fn(i);  // warm-up
  CK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int it = 0; it < g_iters; ++it) {
    CK(cudaEventRecord(a, s));
    for (int i = 0; i < per; ++i) fn(i);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / per);
  }
  CK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t[t.size() / 2];
}

struct Shape {
  const char* name;
  int64_t k, n;
  int per_layer;  // how many per Llama-3-8B decode step (32 layers; lm_head once)
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) g_iters = std::atoi(argv[++i]);
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  const double copy_gbs = CopyBandwidthGBs();
  std::printf("copy D2D 1 GiB: %.0f GB/s (read+write)\n", copy_gbs);

  LtGemm lt;
  std::string err = lt.Init(32u << 20);
  if (!err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }

  const Shape shapes[] = {{"qkv 4096->6144", 4096, 6144, 32},       {"o 4096->4096", 4096, 4096, 32},
                          {"gate_up 4096->28672", 4096, 28672, 32}, {"down 14336->4096", 14336, 4096, 32},
                          {"lm_head 4096->128256", 4096, 128256, 1}};
  const int ms[] = {1, 8, 16, 32, 64};
  const size_t rotate_bytes = size_t(256) << 20;
  struct Row {
    std::string shape;
    int m;
    double ours_ms, lt_ms, bytes;
  };
  std::vector<Row> rows;
  double step_ours[5] = {0}, step_lt[5] = {0}, step_bytes = 0;
  for (const Shape& sh : shapes) {
    const size_t wbytes = size_t(sh.n) * sh.k * 2;
    const int copies = static_cast<int>(std::max<size_t>(1, (rotate_bytes + wbytes - 1) / wbytes));
    std::vector<void*> w(copies);
    for (int c = 0; c < copies; ++c) {
      CK(cudaMalloc(&w[c], wbytes));
      CK(LaunchRandomFill(w[c], ElemType::kBF16, int64_t(sh.n) * sh.k, 100 + c, 0.02f, s));
    }
    void *x = nullptr, *y = nullptr, *y2 = nullptr;
    CK(cudaMalloc(&x, size_t(64) * sh.k * 2));
    CK(cudaMalloc(&y, size_t(64) * sh.n * 2));
    CK(cudaMalloc(&y2, size_t(64) * sh.n * 2));
    CK(LaunchRandomFill(x, ElemType::kBF16, int64_t(64) * sh.k, 7, 1.0f, s));
    step_bytes += double(wbytes) * sh.per_layer;
    for (int mi = 0; mi < 5; ++mi) {
      const int m = ms[mi];
      double ours = 0;
      if (m <= kGemvMaxM) {
        ours = TimeMs(s, copies, [&](int i) {
          CK(LaunchGemv(y, x, w[i % copies], nullptr, m, sh.n, sh.k, ElemType::kBF16, s));
        });
      }
      const double ltm = TimeMs(s, copies, [&](int i) {
        std::string e = lt.Run(y2, x, w[i % copies], m, sh.n, sh.k, ElemType::kBF16, s);
        if (!e.empty()) {
          std::fprintf(stderr, "%s\n", e.c_str());
          std::exit(1);
        }
      });
      if (m <= kGemvMaxM) {  // sanity: same result as cuBLASLt (bf16 outputs)
        CK(LaunchGemv(y, x, w[0], nullptr, m, sh.n, sh.k, ElemType::kBF16, s));
        (void)lt.Run(y2, x, w[0], m, sh.n, sh.k, ElemType::kBF16, s);
        std::vector<uint16_t> a(size_t(m) * sh.n), b(a.size());
        CK(cudaMemcpyAsync(a.data(), y, a.size() * 2, cudaMemcpyDeviceToHost, s));
        CK(cudaMemcpyAsync(b.data(), y2, b.size() * 2, cudaMemcpyDeviceToHost, s));
        CK(cudaStreamSynchronize(s));
        double num = 0, den = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          uint32_t ua = uint32_t(a[i]) << 16, ub = uint32_t(b[i]) << 16;
          float fa, fb;
          std::memcpy(&fa, &ua, 4);
          std::memcpy(&fb, &ub, 4);
          num += (double(fa) - fb) * (double(fa) - fb);
          den += double(fb) * fb;
        }
        const double rel = std::sqrt(num / std::max(den, 1e-30));
        if (!(rel < 1e-2)) {
          std::fprintf(stderr, "MISMATCH %s m=%d: gemv vs cuBLASLt rel err %.3g\n", sh.name, m, rel);
          return 1;
        }
      }
      rows.push_back({sh.name, m, ours, ltm, double(wbytes)});
      step_ours[mi] += (m <= kGemvMaxM ? ours : ltm) * sh.per_layer;
      step_lt[mi] += ltm * sh.per_layer;
    }
    for (void* p : w) CK(cudaFree(p));
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(y2));
  }
  std::printf("\n%-22s %3s %10s %9s %6s %10s %9s %6s\n", "shape", "M", "gemv ms", "GB/s", "%copy", "cuBLASLt", "GB/s",
              "%copy");
  for (const Row& r : rows) {
    const double lt_gbs = r.bytes / r.lt_ms / 1e6;
    if (r.ours_ms > 0) {
      const double o_gbs = r.bytes / r.ours_ms / 1e6;
      std::printf("%-22s %3d %10.4f %9.0f %5.1f%% %10.4f %9.0f %5.1f%%\n", r.shape.c_str(), r.m, r.ours_ms, o_gbs,
                  100 * o_gbs / copy_gbs, r.lt_ms, lt_gbs, 100 * lt_gbs / copy_gbs);
    } else {
      std::printf("%-22s %3d %10s %9s %6s %10.4f %9.0f %5.1f%%\n", r.shape.c_str(), r.m, "-", "-", "-", r.lt_ms, lt_gbs,
                  100 * lt_gbs / copy_gbs);
    }
  }
  std::printf("\nLlama-3-8B decode step GEMMs (32 layers + lm_head, %.2f GB of weights), copy %.0f GB/s:\n",
              step_bytes / 1e9, copy_gbs);
  for (int mi = 0; mi < 5; ++mi) {
    std::printf("  M=%-3d kiln %7.3f ms (%4.0f GB/s, %5.1f%% of copy)   cuBLASLt %7.3f ms (%4.0f GB/s, %5.1f%%)\n",
                ms[mi], step_ours[mi], step_bytes / step_ours[mi] / 1e6, 100 * step_bytes / step_ours[mi] / 1e6 / copy_gbs,
                step_lt[mi], step_bytes / step_lt[mi] / 1e6, 100 * step_bytes / step_lt[mi] / 1e6 / copy_gbs);
  }

  return 0;
}
