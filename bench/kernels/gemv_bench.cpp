// Decode GEMV microbenchmark: copy bandwidth, our streaming GEMV and cuBLASLt on the
// Llama-3-8B layer shapes at M = 1, 8, 16, 32, 64 (bf16, fp32 accumulation).
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

using namespace kiln::cuda;

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

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

  // ---- copy bandwidth (D2D, read + write bytes) ----
  const size_t copy_bytes = size_t(1) << 30;
  void *src = nullptr, *dst = nullptr;
  CK(cudaMalloc(&src, copy_bytes));
  CK(cudaMalloc(&dst, copy_bytes));
  CK(LaunchRandomFill(src, ElemType::kBF16, copy_bytes / 2, 1, 1.0f, s));
  const double copy_ms = TimeMs(s, 1, [&](int) { CK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, s)); });
  const double copy_gbs = 2.0 * copy_bytes / copy_ms / 1e6;
  std::printf("copy D2D 1 GiB: %.3f ms  %.0f GB/s (read+write)\n", copy_ms, copy_gbs);
  CK(cudaFree(src));
  CK(cudaFree(dst));

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

  // ---- decode attention (split-K, paged): Llama-3-8B layer, 32 q / 8 kv heads, hd 128 ----
  std::printf("\nsplit-K decode attention, one layer (32 q / 8 kv heads, head_dim 128, bf16 KV, block 16):\n");
  std::printf("%5s %6s %10s %9s %6s\n", "batch", "ctx", "ms", "KV GB/s", "%copy");
  for (int batch : {1, 8, 32}) {
    for (int ctx : {512, 4096}) {
      const int hq = 32, hkv = 8, hd = 128, bs = 16, nb_seq = (ctx + bs - 1) / bs, nblocks = batch * nb_seq;
      const size_t cache_elems = size_t(nblocks) * bs * hkv * hd;
      void *kc, *vc, *qkv, *out, *ws;
      int32_t *pos, *qs, *lens, *tables;
      CK(cudaMalloc(&kc, cache_elems * 2));
      CK(cudaMalloc(&vc, cache_elems * 2));
      CK(cudaMalloc(&qkv, size_t(batch) * (hq + 2 * hkv) * hd * 2));
      CK(cudaMalloc(&out, size_t(batch) * hq * hd * 2));
      CK(LaunchRandomFill(kc, ElemType::kBF16, cache_elems, 1, 1.0f, s));
      CK(LaunchRandomFill(vc, ElemType::kBF16, cache_elems, 2, 1.0f, s));
      CK(LaunchRandomFill(qkv, ElemType::kBF16, int64_t(batch) * (hq + 2 * hkv) * hd, 3, 1.0f, s));
      std::vector<int32_t> hpos(batch, ctx - 1), hqs(batch + 1), hlens(batch, ctx), htab(size_t(batch) * nb_seq);
      for (int i = 0; i <= batch; ++i) hqs[i] = i;
      for (size_t i = 0; i < htab.size(); ++i) htab[i] = static_cast<int32_t>((i * 7919) % nblocks);  // scattered
      CK(cudaMalloc(reinterpret_cast<void**>(&pos), batch * 4));
      CK(cudaMalloc(reinterpret_cast<void**>(&qs), (batch + 1) * 4));
      CK(cudaMalloc(reinterpret_cast<void**>(&lens), batch * 4));
      CK(cudaMalloc(reinterpret_cast<void**>(&tables), htab.size() * 4));
      CK(cudaMemcpy(pos, hpos.data(), batch * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(qs, hqs.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(lens, hlens.data(), batch * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(tables, htab.data(), htab.size() * 4, cudaMemcpyHostToDevice));
      AttnArgs a;
      a.out = out;
      a.qkv = qkv;
      a.k_cache = kc;
      a.v_cache = vc;
      a.positions = pos;
      a.q_start = qs;
      a.seq_lens = lens;
      a.block_tables = tables;
      a.n_seqs = a.n_tokens = batch;
      a.max_q_len = 1;
      a.max_seq_len = ctx;
      a.max_blocks_per_seq = nb_seq;
      a.block_size = bs;
      a.n_heads = hq;
      a.n_kv_heads = hkv;
      a.head_dim = hd;
      a.scale = 0.0883883f;
      const size_t wsb = DecodeAttentionWorkspaceBytes(a, prop.multiProcessorCount);
      CK(cudaMalloc(&ws, std::max<size_t>(wsb, 16)));
      const double t = TimeMs(s, 10, [&](int) { CK(LaunchDecodeAttention(a, ElemType::kBF16, ws, prop.multiProcessorCount, s)); });
      const double kv_bytes = 2.0 * batch * ctx * hkv * hd * 2;
      std::printf("%5d %6d %10.4f %9.0f %5.1f%%\n", batch, ctx, t, kv_bytes / t / 1e6, 100 * kv_bytes / t / 1e6 / copy_gbs);
      for (void* p : {kc, vc, qkv, out, ws}) CK(cudaFree(p));
      for (int32_t* p : {pos, qs, lens, tables}) CK(cudaFree(p));
    }
  }
  return 0;
}
