// How far cuBLASLt's first heuristic choice is from the best of its candidates, on the
// Llama-3-8B projection shapes at decode/throughput batch sizes and prefill sizes (bf16, the
// layouts of src/backend/cuda/gemm_lt.cpp: out[m, n] = x[m, k] w[n, k]^T).
//
//   g++ -O2 -std=c++20 -I/usr/local/cuda/include bench/kernels/lt_algos_bench.cpp \
//       -L/usr/local/cuda/lib64 -lcublasLt -lcudart -o lt_algos_bench
//   lt_algos_bench [M ...]          default M: 1 8 32 64 128 192 256 512 2048
//
// Weights rotate through enough copies that L2 never holds them (as in a real step). Each
// candidate: 2 warm-up runs, then the median of 7 timed rounds over the copies (CUDA events).
// Prints per shape and M: first-choice time, best time and its index, and the floors.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.h"

#define LT(x)                                                                                        \
  do {                                                                                               \
    cublasStatus_t s_ = (x);                                                                         \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                               \
      std::fprintf(stderr, "%s:%d: cublasLt status %d\n", __FILE__, __LINE__, static_cast<int>(s_)); \
      std::exit(1);                                                                                  \
    }                                                                                                \
  } while (0)

struct Shape {
  const char* name;
  int64_t n, k;
};

int main(int argc, char** argv) {
  std::vector<int64_t> ms;
  for (int i = 1; i < argc; ++i) ms.push_back(std::atoll(argv[i]));
  if (ms.empty()) ms = {1, 8, 32, 64, 128, 192, 256, 512, 2048};
  const Shape shapes[] = {{"qkv", 6144, 4096},
                          {"o", 4096, 4096},
                          {"gate_up", 28672, 4096},
                          {"down", 4096, 14336},
                          {"lm_head", 128256, 4096}};
  cublasLtHandle_t h;
  LT(cublasLtCreate(&h));
  size_t ws_bytes = 32u << 20;
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const double copy_gbs = CopyBandwidthGBs();  // read + write bytes / time: the floor
  std::printf("%s, copy %.0f GB/s\n", prop.name, copy_gbs);
  std::printf("%-8s %5s %10s %10s %5s %7s %8s %8s %9s\n", "shape", "M", "first us", "best us", "idx", "gain",
              "GB/s", "TFLOP/s", "floor us");
  for (const Shape& sh : shapes) {
    const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t(768) << 20) / wbytes + 1));
    std::vector<void*> w(copies);
    for (auto& p : w) {
      CK(cudaMalloc(&p, wbytes));
      CK(cudaMemset(p, 0x3c, wbytes));  // small finite bf16 values
    }
    for (int64_t m : ms) {
      void *x, *out;
      CK(cudaMalloc(&x, static_cast<size_t>(m) * sh.k * 2));
      CK(cudaMalloc(&out, static_cast<size_t>(m) * sh.n * 2));
      CK(cudaMemset(x, 0x3c, static_cast<size_t>(m) * sh.k * 2));
      cublasLtMatmulDesc_t op;
      LT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      cublasLtMatrixLayout_t a, b, c;
      LT(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, sh.k, sh.n, sh.k));
      LT(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, sh.k, m, sh.k));
      LT(cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, sh.n, m, sh.n));
      cublasLtMatmulPreference_t pref;
      LT(cublasLtMatmulPreferenceCreate(&pref));
      LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                              sizeof(ws_bytes)));
      cublasLtMatmulHeuristicResult_t res[32];
      int found = 0;
      LT(cublasLtMatmulAlgoGetHeuristic(h, op, a, b, c, c, pref, 32, res, &found));
      const float alpha = 1.0f, beta = 0.0f;
      double first = 0, best = 1e30;
      int best_i = -1;
      for (int i = 0; i < found; ++i) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        auto launch = [&](int copy) {
          return cublasLtMatmul(h, op, &alpha, w[copy], a, x, b, &beta, out, c, out, c, &res[i].algo, ws,
                                ws_bytes, s);
        };
        bool ok = true;
        for (int r = 0; r < 2 && ok; ++r) ok = launch(r % copies) == CUBLAS_STATUS_SUCCESS;
        if (!ok) continue;
        std::vector<double> t;
        for (int round = 0; round < 7; ++round) {
          CK(cudaEventRecord(e0, s));
          for (int cp = 0; cp < copies; ++cp) launch(cp);
          CK(cudaEventRecord(e1, s));
          CK(cudaEventSynchronize(e1));
          float ms_;
          CK(cudaEventElapsedTime(&ms_, e0, e1));
          t.push_back(ms_ * 1e3 / copies);
        }
        std::sort(t.begin(), t.end());
        const double us = t[t.size() / 2];
        if (i == 0) first = us;
        if (us < best) best = us, best_i = i;
      }
      const double flops = 2.0 * m * sh.n * sh.k;
      const double bytes = wbytes + static_cast<double>(m) * (sh.k + sh.n) * 2;
      const double floor_us = std::max(bytes / (copy_gbs * 1e9), flops / 790e12) * 1e6;
      std::printf("%-8s %5lld %10.1f %10.1f %5d %6.1f%% %8.0f %8.0f %9.1f\n", sh.name,
                  static_cast<long long>(m), first, best, best_i, 100.0 * (first - best) / first,
                  bytes / (best * 1e-6) / 1e9, flops / (best * 1e-6) / 1e12, floor_us);
      std::fflush(stdout);
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(a);
      cublasLtMatrixLayoutDestroy(b);
      cublasLtMatrixLayoutDestroy(c);
      cublasLtMatmulDescDestroy(op);
      cudaFree(x);
      cudaFree(out);
    }
    for (void* p : w) cudaFree(p);
  }
  return 0;
}
