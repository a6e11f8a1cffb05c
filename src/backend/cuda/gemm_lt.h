// cuBLASLt GEMMs for large M: out[m, n] = x[m, k] @ w[n, k]^T, row-major, fp32 accumulation.
// The heuristic's algorithm is chosen once per (m, n, k, dtype) and cached with its layouts;
// one workspace is reused by every call.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "backend/cuda/kernels/kernels.h"

namespace kiln::cuda {

class LtGemm {
 public:
  LtGemm() = default;
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Creates the handle and a workspace of `workspace_bytes`; returns an error message or "".
  std::string Init(size_t workspace_bytes);
  // Enqueues out = x w^T + beta * out on `s` (beta 0 or 1: 1 accumulates into out, e.g. the
  // residual stream); returns an error message or "".
  std::string Run(void* out, const void* x, const void* w, int64_t m, int64_t n, int64_t k, ElemType t,
                  cudaStream_t s, float beta = 0.0f);

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::string MakePlan(int64_t m, int64_t n, int64_t k, ElemType t, uint32_t align, Plan* p);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t, int, uint32_t>, Plan> plans_;  // (m, n, k, dtype, align)
};

}  // namespace kiln::cuda
