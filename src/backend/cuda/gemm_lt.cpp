#include "backend/cuda/gemm_lt.h"

namespace kiln::cuda {
namespace {

cudaDataType_t CudaType(ElemType t) {
  switch (t) {
    case ElemType::kF32: return CUDA_R_32F;
    case ElemType::kF16: return CUDA_R_16F;
    case ElemType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

std::string LtError(const char* what, cublasStatus_t st) {
  return std::string("cuBLASLt ") + what + " failed (status " + std::to_string(static_cast<int>(st)) + ")";
}

}  // namespace

LtGemm::~LtGemm() {
  for (auto& [key, p] : plans_) {
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

std::string LtGemm::Init(size_t workspace_bytes) {
  cublasStatus_t st = cublasLtCreate(&handle_);
  if (st != CUBLAS_STATUS_SUCCESS) return LtError("create", st);
  if (cudaMalloc(&workspace_, workspace_bytes) != cudaSuccess) {
    workspace_ = nullptr;
    return "cannot allocate the cuBLASLt workspace (" + std::to_string(workspace_bytes) + " bytes)";
  }
  workspace_bytes_ = workspace_bytes;
  return "";
}

// Row-major out[m, n] = x[m, k] w[n, k]^T is column-major out^T[n, m] = w^T... i.e.
// C(n x m) = op(A) B with A = w stored column-major k x n (transposed), B = x column-major k x m.
std::string LtGemm::MakePlan(int64_t m, int64_t n, int64_t k, ElemType t, uint32_t align, Plan* p) {
  const cudaDataType_t dt = CudaType(t);
  const cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
  cublasStatus_t st = cublasLtMatmulDescCreate(&p->op, ct, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS) return LtError("matmul desc", st);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  if ((st = cublasLtMatrixLayoutCreate(&p->a, dt, k, n, k)) != CUBLAS_STATUS_SUCCESS) return LtError("layout A", st);
  if ((st = cublasLtMatrixLayoutCreate(&p->b, dt, k, m, k)) != CUBLAS_STATUS_SUCCESS) return LtError("layout B", st);
  if ((st = cublasLtMatrixLayoutCreate(&p->c, dt, n, m, n)) != CUBLAS_STATUS_SUCCESS) return LtError("layout C", st);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                       sizeof(workspace_bytes_));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  st = cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    return "cuBLASLt found no algorithm for m=" + std::to_string(m) + " n=" + std::to_string(n) +
           " k=" + std::to_string(k);
  p->algo = res.algo;
  return "";
}

std::string LtGemm::Run(void* out, const void* x, const void* w, int64_t m, int64_t n, int64_t k, ElemType t,
                        cudaStream_t s, float beta) {
  // The largest power-of-two alignment (<= 256 bytes) all three pointers share.
  const uintptr_t bits = reinterpret_cast<uintptr_t>(out) | reinterpret_cast<uintptr_t>(x) |
                         reinterpret_cast<uintptr_t>(w) | 256u;
  const uint32_t align = static_cast<uint32_t>(bits & (~bits + 1));
  auto key = std::make_tuple(m, n, k, static_cast<int>(t), align);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    Plan p;
    std::string err = MakePlan(m, n, k, t, align, &p);
    if (!err.empty()) return err;
    it = plans_.emplace(key, p).first;
  }
  const Plan& p = it->second;
  const float alpha = 1.0f;
  cublasStatus_t st = cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c, &p.algo,
                                     workspace_, workspace_bytes_, s);
  if (st != CUBLAS_STATUS_SUCCESS) return LtError("matmul", st);
  return "";
}

}  // namespace kiln::cuda
