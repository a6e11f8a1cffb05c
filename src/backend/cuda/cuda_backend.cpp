// CUDA backend: device memory, the stream, weight upload, and op dispatch to the kernels in
// kernels/ (launchers take raw pointers + the stream) and cuBLASLt (gemm_lt).
//
// Weights are held in act_dtype (f32 exactness runs convert at upload). Ops return void, so a
// failure (bad dtype/shape, launch error) is recorded as the backend's first error and
// returned by the next Synchronize() / CopyToHost*().
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/kernels/kernels.h"
#include "backend/cuda/kernels/sampling.h"
#include "backend/cuda/op_times.h"

namespace kiln {
namespace {

using cuda::ElemType;

std::string CudaErr(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

bool ToElem(DType d, ElemType* out) {
  switch (d) {
    case DType::kF32: *out = ElemType::kF32; return true;
    case DType::kF16: *out = ElemType::kF16; return true;
    case DType::kBF16: *out = ElemType::kBF16; return true;
    default: return false;
  }
}

constexpr size_t kLtWorkspace = 32u << 20;

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, DType act) : device_(device), act_(act) {
    ToElem(act, &et_);
    // KILN_CUDA_PREFILL_ATTN=0 sends every attention call to the split-K kernel (tests, A/B).
    const char* env = std::getenv("KILN_CUDA_PREFILL_ATTN");
    prefill_enabled_ = !(env && env[0] == '0');
    // Fusion switches (1 = on, 0 = the separate ops). Measured on the H100 (docs/PERFORMANCE.md):
    // the gated GEMV slows the one-token weight stream by ~0.5%, so it is opt-in; the residual
    // add in the epilogue costs nothing and saves an Add per block.
    auto flag = [](const char* name, bool def) {
      const char* v = std::getenv(name);
      return v && *v ? v[0] != '0' : def;
    };
    fused_gated_ = flag("KILN_CUDA_FUSED_GATED", false);
    fused_residual_ = flag("KILN_CUDA_FUSED_RESIDUAL", true);
    split_mixed_ = flag("KILN_CUDA_SPLIT_MIXED_ATTN", true);
    fold_norm_ = flag("KILN_CUDA_FOLD_NORM", true);
    // KILN_CUDA_DECODE_STREAMK: 0 = cluster split-K kernel only, 1 = stream-K for every
    // decode-only batch (tests, A/B); unset = stream-K for large batches.
    const char* sk = std::getenv("KILN_CUDA_DECODE_STREAMK");
    decode_split_ = !sk || !*sk    ? cuda::DecodeSplit::kAuto
                    : sk[0] == '0' ? cuda::DecodeSplit::kClusters
                                   : cuda::DecodeSplit::kStreamK;
    const char* graphs = std::getenv("KILN_CUDA_GRAPHS");
    graphs_enabled_ = !(graphs && graphs[0] == '0');
  }
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    DropGraphs();
    if (attn_ws_) cudaFree(attn_ws_);
    for (int i = 0; i < 2; ++i) {
      if (pinned_[i]) cudaFreeHost(pinned_[i]);
      if (device_stage_[i]) cudaFree(device_stage_[i]);
      if (upload_done_[i]) cudaEventDestroy(upload_done_[i]);
    }
    lt_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status Init() {
    cudaError_t e = cudaSetDevice(device_);
    if (e != cudaSuccess) return Internal("cuda: cannot select device " + std::to_string(device_) + ": " + CudaErr(e));
    cudaDeviceProp prop{};
    if ((e = cudaGetDeviceProperties(&prop, device_)) != cudaSuccess)
      return Internal("cuda: cannot query device " + std::to_string(device_) + ": " + CudaErr(e));
    num_sms_ = prop.multiProcessorCount;
    name_ = "cuda:" + std::to_string(device_) + " (" + prop.name + ")";
    if ((e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)) != cudaSuccess)
      return Internal("cuda: cannot create a stream: " + CudaErr(e));
    lt_ = std::make_unique<cuda::LtGemm>();
    std::string err = lt_->Init(kLtWorkspace);
    if (!err.empty()) return Internal("cuda: " + err);
    return Status::Ok();
  }

  std::string name() const override { return name_; }
  DType act_dtype() const override { return act_; }

  // ---- memory ----
  Expected<void*> Alloc(size_t bytes) override {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Status(ErrorCode::kOutOfMemory, name_ + ": cannot allocate " + std::to_string(bytes) +
                                                 " bytes of device memory (" + CudaErr(e) + ")");
    }
    return p;
  }
  void Free(void* p) override {
    if (p) cudaFree(p);
  }
  Status CopyToDevice(void* dst, const void* src, size_t n) override {
    if (n == 0) return Status::Ok();
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_);
    if (e != cudaSuccess) return Internal(name_ + ": host-to-device copy of " + std::to_string(n) + " bytes: " + CudaErr(e));
    return Status::Ok();
  }
  Status CopyToHost(void* dst, const void* src, size_t n) override {
    if (n > 0) {
      cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_);
      if (e != cudaSuccess) Record(e, "device-to-host copy");
    }
    return Synchronize();
  }
  Status CopyToHostF32(float* dst, const Tensor& src) override {
    if (src.dtype == DType::kF32) return CopyToHost(dst, src.data, src.nbytes());
    std::vector<uint8_t> tmp(src.nbytes());
    KILN_RETURN_IF_ERROR(CopyToHost(tmp.data(), src.data, tmp.size()));
    return ConvertElements(tmp.data(), src.dtype, dst, DType::kF32, src.numel());
  }
  Expected<double> MeasureCopyBandwidth(size_t bytes) override {
    void *a = nullptr, *b = nullptr;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
      cudaFree(a);
      return Status(ErrorCode::kOutOfMemory, "copy bandwidth: cannot allocate 2 x " + std::to_string(bytes));
    }
    cudaMemsetAsync(a, 1, bytes, stream_);  // never time untouched pages
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<float> ms;
    for (int i = 0; i < 23; ++i) {
      cudaEventRecord(e0, stream_);
      cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, stream_);
      cudaEventRecord(e1, stream_);
      cudaEventSynchronize(e1);
      float t = 0;
      cudaEventElapsedTime(&t, e0, e1);
      if (i >= 3) ms.push_back(t);  // warm-up
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return Internal(std::string("copy bandwidth: ") + cudaGetErrorString(e));
    std::sort(ms.begin(), ms.end());
    return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3) / 1e9;
  }
  Status Synchronize() override {
    cudaError_t e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess) Record(e, "stream synchronize");
    if (times_.on()) times_.Collect();
    Status st = error_;
    error_ = Status::Ok();
    return st;
  }

  Expected<Weight> UploadWeight(const void* src, DType src_dtype, int64_t rows, int64_t cols) override {
    ElemType st;
    if (!ToElem(src_dtype, &st))
      return Unsupported(name_ + ": cannot upload a " + std::string(DTypeName(src_dtype)) +
                         " weight (f32/f16/bf16 only; quantized weights are not supported yet)");
    const int64_t n = rows * cols;
    KILN_ASSIGN_OR_RETURN(void* p, Alloc(DTypeBytes(act_, n)));
    Status s = CopyConverted(p, src, st, n);
    if (!s.ok()) {
      Free(p);
      return s;
    }
    Weight w;
    w.w = Tensor(p, act_, {rows, cols});
    return w;
  }
  Expected<Weight> RandomWeight(DType dtype, int64_t rows, int64_t cols, uint64_t seed, float scale) override {
    ElemType unused;
    if (!ToElem(dtype, &unused))
      return Unsupported(name_ + ": random " + std::string(DTypeName(dtype)) + " weights are not supported");
    const int64_t n = rows * cols;
    KILN_ASSIGN_OR_RETURN(void* p, Alloc(DTypeBytes(act_, n)));
    cudaError_t e = cuda::LaunchRandomFill(p, et_, n, seed, scale, stream_);
    if (e != cudaSuccess) {
      Free(p);
      return Internal(name_ + ": random weight fill: " + CudaErr(e));
    }
    Weight w;
    w.w = Tensor(p, act_, {rows, cols});
    return w;
  }

  // ---- ops ----
  void Embedding(Tensor out, const Weight& table, const Tensor& ids, float scale) override {
    if (!Act("Embedding", {&out, &table.w}) || !I32("Embedding", ids)) return;
    Record(cuda::LaunchGatherRows(out.data, table.w.data, ids.ptr<int32_t>(), ids.numel(), table.w.dim(1), scale, et_,
                                  stream_), "Embedding");
  }
  void Norm(Tensor out, const Tensor& x, const Tensor& w, const Tensor& b, float eps, bool rms,
            bool unit_offset) override {
    if (!Act("Norm", {&out, &x}) || (!w.empty() && !F32("Norm", w)) || (!b.empty() && !F32("Norm", b))) return;
    Record(cuda::LaunchNorm(out.data, x.data, nullptr, w.empty() ? nullptr : w.ptr<float>(),
                            b.empty() ? nullptr : b.ptr<float>(), x.rows(),
                            x.cols(), eps, rms, unit_offset, et_, stream_), "Norm");
  }
  void AddNorm(Tensor out, Tensor residual, const Tensor& delta, const Tensor& w, const Tensor& b, float eps, bool rms,
               bool unit_offset) override {
    if (!Act("AddNorm", {&out, &residual, &delta}) || !F32("AddNorm", w) || (!b.empty() && !F32("AddNorm", b))) return;
    Record(cuda::LaunchNorm(out.data, residual.data, delta.data, w.ptr<float>(), b.empty() ? nullptr : b.ptr<float>(),
                            residual.rows(), residual.cols(), eps, rms, unit_offset, et_, stream_), "AddNorm");
  }
  void Linear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias) override {
    if (!Act("Linear", {&out, &x, &w.w}) || (!bias.empty() && !F32("Linear", bias))) return;
    if (!w.scales.empty()) return Fail("Linear: quantized weights are not supported by the CUDA backend yet");
    const int64_t m = x.rows(), k = x.cols(), n = w.w.dim(0);
    if (w.w.dim(1) != k || out.numel() != m * n)
      return Fail("Linear: shapes x " + x.ShapeStr() + ", w " + w.w.ShapeStr() + ", out " + out.ShapeStr() + " disagree");
    const float* bp = bias.empty() ? nullptr : bias.ptr<float>();
    if (UseGemv(m, n)) {
      Record(cuda::LaunchGemv(out.data, x.data, w.w.data, bp, m, n, k, et_, stream_), "Linear (gemv)");
      return;
    }
    std::string err = lt_->Run(out.data, x.data, w.w.data, m, n, k, et_, stream_);
    if (!err.empty()) return Fail("Linear: " + err);
    MarkGemm("Linear", n, k);
    if (bp) Record(cuda::LaunchAddBias(out.data, bp, m, n, et_, stream_), "Linear (bias)");
  }
  // The residual add rides in the GEMM's epilogue: the streaming kernels add into the residual
  // row they own; cuBLASLt accumulates into it (beta = 1). No [m, n] round trip, no Add launch.
  void LinearResidual(Tensor residual, const Tensor& x, const Weight& w, const Tensor& bias, Tensor scratch) override {
    const int64_t m = x.rows(), k = x.cols(), n = w.w.dim(0);
    if (!fused_residual_ || !w.scales.empty() || w.w.dim(1) != k || residual.numel() != m * n ||
        (!bias.empty() && !UseGemv(m, n)))
      return Backend::LinearResidual(residual, x, w, bias, scratch);
    if (!Act("LinearResidual", {&residual, &x, &w.w}) || (!bias.empty() && !F32("LinearResidual", bias))) return;
    if (UseGemv(m, n)) {
      cuda::GemvFuse fuse;
      fuse.residual = residual.data;
      Record(cuda::LaunchGemvFused(nullptr, x.data, w.w.data, bias.empty() ? nullptr : bias.ptr<float>(), m, n, k,
                                   fuse, et_, stream_),
             "LinearResidual (gemv)");
      return;
    }
    std::string err = lt_->Run(residual.data, x.data, w.w.data, m, n, k, et_, stream_, /*beta=*/1.0f);
    if (!err.empty()) return Fail("LinearResidual: " + err);
    MarkGemm("LinearResidual", n, k);
  }
  void RopeWriteKv(Tensor qkv, const AttentionBatch& batch, const AttentionShape& s, const RopeSpec& rope,
                   const Tensor& q_norm, const Tensor& k_norm, float norm_eps, KvCacheLayer cache) override {
    if (!Act("RopeWriteKv", {&qkv, &cache.k, &cache.v})) return;
    if (rope.rotary_dim > 0 && !F32("RopeWriteKv inv_freq", rope.inv_freq)) return;
    cuda::RopeKvArgs a;
    a.qkv = qkv.data;
    a.k_cache = cache.k.data;
    a.v_cache = cache.v.data;
    a.positions = batch.positions.ptr<int32_t>();
    a.slots = batch.slot_mapping.ptr<int32_t>();
    a.inv_freq = rope.rotary_dim > 0 ? rope.inv_freq.ptr<float>() : nullptr;
    a.q_norm = q_norm.empty() ? nullptr : q_norm.ptr<float>();
    a.k_norm = k_norm.empty() ? nullptr : k_norm.ptr<float>();
    a.n_tokens = batch.n_tokens;
    a.n_heads = s.n_heads;
    a.n_kv_heads = s.n_kv_heads;
    a.head_dim = s.head_dim;
    a.rotary_dim = rope.rotary_dim;
    a.interleaved = rope.interleaved;
    a.attention_factor = rope.attention_factor;
    a.eps = norm_eps;
    Record(cuda::LaunchRopeWriteKv(a, et_, stream_), "RopeWriteKv");
  }
  void Attention(Tensor out, const Tensor& qkv, const AttentionBatch& batch, const AttentionShape& s,
                 const AttentionParams& p, KvCacheLayer cache) override {
    if (!Act("Attention", {&out, &qkv, &cache.k, &cache.v})) return;
    if (!p.alibi_slopes.empty() && !F32("Attention alibi_slopes", p.alibi_slopes)) return;
    if (s.n_kv_heads <= 0 || s.n_heads % s.n_kv_heads != 0)
      return Fail("Attention: " + std::to_string(s.n_heads) + " query heads are not a multiple of " +
                  std::to_string(s.n_kv_heads) + " KV heads");
    cuda::AttnArgs a = ArgsOf(batch, s);
    a.out = out.data;
    a.qkv = qkv.data;
    a.k_cache = cache.k.data;
    a.v_cache = cache.v.data;
    a.alibi = p.alibi_slopes.empty() ? nullptr : p.alibi_slopes.ptr<float>();
    a.scale = p.scale;
    a.sliding_window = p.sliding_window;
    a.softcap = p.softcap;
    if (UsesPrefillKernel(a)) {
      const int n_dec = batch.n_decode_seqs;
      if (n_dec > 0 && n_dec < a.n_seqs && split_mixed_) {
        // A mixed step: its leading one-token sequences (decodes) through the decode kernel,
        // which shares each K/V read across a GQA group; the prefill kernel would spend a
        // 128-row query tile per head on each of them.
        cuda::AttnArgs dec = a;
        dec.n_seqs = n_dec;
        dec.n_tokens = n_dec;
        dec.max_q_len = 1;
        DecodeAttention(dec, "Attention (decode rows)");
        cuda::AttnArgs pre = a;  // q_start keeps absolute token offsets
        pre.q_start += n_dec;
        pre.seq_lens += n_dec;
        pre.block_tables += static_cast<int64_t>(n_dec) * a.max_blocks_per_seq;
        pre.n_seqs -= n_dec;
        pre.n_tokens -= n_dec;
        Record(cuda::LaunchPrefillAttention(pre, et_, stream_), "Attention (prefill rows)");
        return;
      }
      Record(cuda::LaunchPrefillAttention(a, et_, stream_), "Attention (prefill)");
      return;
    }
    DecodeAttention(a, "Attention (split-K)");
  }
  // The decode kernel; its stream-K variant needs a workspace, grown here outside recordings.
  void DecodeAttention(const cuda::AttnArgs& a, const char* what) {
    const size_t ws = cuda::DecodeAttentionWorkspaceBytes(a, et_, num_sms_, decode_split_);
    if (ws > attn_ws_bytes_) {
      if (capturing_) return Fail("Attention: a split-K workspace cannot be allocated while recording a step graph");
      Status st = GrowAttentionWorkspace(ws);
      if (!st.ok()) return Fail("Attention: " + st.message());
    }
    Record(cuda::LaunchDecodeAttention(a, et_, attn_ws_, num_sms_, stream_, decode_split_), what);
  }

  // ---- step graphs ----
  bool SupportsGraphs() const override { return graphs_enabled_; }
  Expected<bool> ReplayGraph(uint64_t key) override {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return false;
    cudaError_t e = cudaGraphLaunch(it->second, stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Internal(name_ + ": step graph launch: " + CudaErr(e));
    }
    if (times_.on()) times_.Mark(stream_, "step graph replay");
    return true;
  }
  Status CaptureGraph(uint64_t key, const std::function<Status()>& enqueue) override {
    KILN_RETURN_IF_ERROR(Synchronize());  // report earlier errors as theirs, not the capture's
    cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Internal(name_ + ": cannot start recording a step graph: " + CudaErr(e));
    }
    capturing_ = true;
    Status st = enqueue();
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    e = cudaStreamEndCapture(stream_, &graph);
    if (st.ok() && !error_.ok()) st = error_;
    error_ = Status::Ok();
    if (st.ok() && e != cudaSuccess) st = Internal(name_ + ": recording a step graph failed: " + CudaErr(e));
    cudaGraphExec_t exec = nullptr;
    if (st.ok()) {
      e = cudaGraphInstantiate(&exec, graph, 0);
      if (e != cudaSuccess) st = Internal(name_ + ": cannot instantiate a step graph: " + CudaErr(e));
    }
    if (graph) cudaGraphDestroy(graph);
    if (!st.ok()) {
      cudaGetLastError();
      return st;
    }
    graphs_[key] = exec;
    e = cudaGraphLaunch(exec, stream_);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return Internal(name_ + ": step graph launch: " + CudaErr(e));
    }
    return Status::Ok();
  }
  void GatedLinear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias, Activation act,
                   Tensor gate_up) override {
    const int64_t m = x.rows(), k = x.cols(), f = w.w.dim(0) / 2;
    // Decode-sized m: one streaming pass writes act(gate) * up (no [m, 2f] round trip, one
    // launch fewer per layer); larger m: cuBLASLt + the elementwise kernel.
    if (m > cuda::kGemvGatedMaxM || !w.scales.empty() || !fused_gated_)
      return Backend::GatedLinear(out, x, w, bias, act, gate_up);
    if (!Act("GatedLinear", {&out, &x, &w.w}) || (!bias.empty() && !F32("GatedLinear", bias))) return;
    if (w.w.dim(1) != k || w.w.dim(0) != 2 * f || out.numel() != m * f)
      return Fail("GatedLinear: shapes x " + x.ShapeStr() + ", w " + w.w.ShapeStr() + ", out " + out.ShapeStr() +
                  " disagree");
    Record(cuda::LaunchGemvGated(out.data, x.data, w.w.data, bias.empty() ? nullptr : bias.ptr<float>(), m, f, k,
                                 static_cast<cuda::Act>(act), et_, stream_),
           "GatedLinear (gemv)");
  }
  // Folded norms (unit norm weight): one token's projection normalises x inside the streaming
  // GEMV, so no norm kernel runs between the residual update and the projection.
  bool FoldsNormWeights() const override { return fold_norm_; }
  Status ScaleWeightColumns(Weight& w, const Tensor& scale) override {
    ElemType t;
    if (!w.scales.empty() || !ToElem(w.w.dtype, &t) || scale.dtype != DType::kF32 || scale.numel() != w.w.dim(1))
      return InvalidArgument("ScaleWeightColumns: needs a plain float weight and an f32 scale per column");
    const cudaError_t e = cuda::LaunchScaleColumns(w.w.data, scale.ptr<float>(), w.w.dim(0), w.w.dim(1), t, stream_);
    if (e != cudaSuccess) return Internal(name_ + ": ScaleWeightColumns: " + CudaErr(e));
    return Status::Ok();
  }
  bool RmsGemv(const Tensor& x, const Tensor& norm_w, const Weight& w) const {
    return norm_w.empty() && x.rows() == 1 && w.scales.empty() && w.w.dim(1) == x.cols();
  }
  void NormLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w, const Tensor& bias,
                  Tensor h) override {
    if (!RmsGemv(x, norm_w, w)) return Backend::NormLinear(out, x, norm_w, eps, w, bias, h);
    if (!Act("NormLinear", {&out, &x, &w.w}) || (!bias.empty() && !F32("NormLinear", bias))) return;
    cuda::GemvFuse fuse;
    fuse.rms_eps = eps;
    Record(cuda::LaunchGemvFused(out.data, x.data, w.w.data, bias.empty() ? nullptr : bias.ptr<float>(), 1,
                                 w.w.dim(0), x.cols(), fuse, et_, stream_),
           "NormLinear (gemv)");
  }
  void NormGatedLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w,
                       const Tensor& bias, Activation act, Tensor h, Tensor gate_up) override {
    if (!RmsGemv(x, norm_w, w)) return Backend::NormGatedLinear(out, x, norm_w, eps, w, bias, act, h, gate_up);
    if (!Act("NormGatedLinear", {&out, &x, &w.w, &gate_up}) || (!bias.empty() && !F32("NormGatedLinear", bias)))
      return;
    cuda::GemvFuse fuse;
    fuse.rms_eps = eps;
    if (fused_gated_) {
      fuse.gated_f = w.w.dim(0) / 2;
      fuse.act = static_cast<cuda::Act>(act);
    }
    Record(cuda::LaunchGemvFused(fused_gated_ ? out.data : gate_up.data, x.data, w.w.data,
                                 bias.empty() ? nullptr : bias.ptr<float>(), 1, w.w.dim(0), x.cols(), fuse, et_,
                                 stream_),
           "NormGatedLinear (gemv)");
    if (!fused_gated_) GatedActivation(out, gate_up.SliceRows(0, 1), act);
  }
  void GatedActivation(Tensor out, const Tensor& gate_up, Activation act) override {
    if (!Act("GatedActivation", {&out, &gate_up})) return;
    Record(cuda::LaunchGatedAct(out.data, gate_up.data, gate_up.rows(), gate_up.cols() / 2,
                                static_cast<cuda::Act>(act), et_, stream_), "GatedActivation");
  }
  void ActivationInPlace(Tensor x, Activation act) override {
    if (!Act("ActivationInPlace", {&x})) return;
    Record(cuda::LaunchActInPlace(x.data, x.numel(), static_cast<cuda::Act>(act), et_, stream_), "ActivationInPlace");
  }
  void Add(Tensor out, const Tensor& a, const Tensor& b) override {
    if (!Act("Add", {&out, &a, &b})) return;
    Record(cuda::LaunchAdd(out.data, a.data, b.data, out.numel(), et_, stream_), "Add");
  }
  void GatherRows(Tensor out, const Tensor& x, const Tensor& idx) override {
    if (!Act("GatherRows", {&out, &x}) || !I32("GatherRows", idx)) return;
    Record(cuda::LaunchGatherRows(out.data, x.data, idx.ptr<int32_t>(), idx.numel(), x.cols(), 1.0f, et_, stream_),
           "GatherRows");
  }
  void ArgmaxRows(Tensor ids, const Tensor& logits) override {
    if (!Act("ArgmaxRows", {&logits})) return;
    Record(cuda::LaunchArgmaxRows(ids.ptr<int32_t>(), logits.data, logits.rows(), logits.cols(), et_, stream_),
           "ArgmaxRows");
  }
  void SampleRows(Tensor ids, Tensor logprobs, const Tensor& logits, const DeviceSamplingBatch& b) override {
    if (!Act("SampleRows", {&logits}) || !I32("SampleRows", ids) || !F32("SampleRows", b.workspace)) return;
    cuda::SampleRowsArgs a;
    a.ids = ids.ptr<int32_t>();
    a.logprobs = logprobs.empty() ? nullptr : logprobs.ptr<float>();
    a.top_ids = b.top_ids.empty() ? nullptr : b.top_ids.ptr<int32_t>();
    a.top_logprobs = b.top_logprobs.empty() ? nullptr : b.top_logprobs.ptr<float>();
    a.logits = logits.data;
    a.params = static_cast<const DeviceSamplingRow*>(b.rows.data);
    a.penalties = static_cast<const DevicePenaltyEntry*>(b.penalties.data);
    a.n_penalties = b.n_penalties;
    a.workspace = b.workspace.ptr<float>();
    a.rows = logits.rows();
    a.vocab = logits.cols();
    a.any_logprobs = b.any_logprobs;
    Record(cuda::LaunchSampleRows(a, et_, stream_), "SampleRows");
  }
  void Softcap(Tensor x, float cap) override {
    if (!Act("Softcap", {&x})) return;
    Record(cuda::LaunchSoftcap(x.data, x.numel(), cap, et_, stream_), "Softcap");
  }

 private:
  static constexpr int kPrefillMinQ = 16;

  // Our streaming kernels win at m <= 8 on every Llama-3-8B shape; at 9..16 only on wide
  // matrices (gate_up, lm_head), cuBLASLt on the rest (docs/PERFORMANCE.md, 2026-11-25).
  static bool UseGemv(int64_t m, int64_t n) { return m <= 8 || (m <= cuda::kGemvMaxM && n >= 16384); }
  static cuda::AttnArgs ArgsOf(const AttentionBatch& batch, const AttentionShape& s) {
    cuda::AttnArgs a;
    a.positions = batch.positions.ptr<int32_t>();
    a.q_start = batch.q_start.ptr<int32_t>();
    a.seq_lens = batch.seq_lens.ptr<int32_t>();
    a.block_tables = batch.block_tables.ptr<int32_t>();
    a.n_seqs = batch.n_seqs;
    a.n_tokens = batch.n_tokens;
    a.max_q_len = batch.max_q_len;
    a.max_seq_len = batch.max_seq_len;
    a.max_blocks_per_seq = batch.max_blocks_per_seq;
    a.block_size = batch.block_size;
    a.n_heads = s.n_heads;
    a.n_kv_heads = s.n_kv_heads;
    a.head_dim = s.head_dim;
    return a;
  }
  bool UsesPrefillKernel(const cuda::AttnArgs& a) const {
    return prefill_enabled_ && a.max_q_len >= kPrefillMinQ && cuda::PrefillAttentionSupported(a, et_);
  }
  void DropGraphs() {
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    graphs_.clear();
  }
  // Graphs hold the old workspace's address: growing it drops them.
  Status GrowAttentionWorkspace(size_t bytes) {
    cudaStreamSynchronize(stream_);
    DropGraphs();
    if (attn_ws_) cudaFree(attn_ws_);
    attn_ws_ = nullptr;
    attn_ws_bytes_ = 0;
    if (cudaMalloc(&attn_ws_, bytes) != cudaSuccess || cudaMemset(attn_ws_, 0, bytes) != cudaSuccess) {
      cudaGetLastError();
      if (attn_ws_) cudaFree(attn_ws_);
      attn_ws_ = nullptr;
      return Status(ErrorCode::kOutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes of split-K workspace");
    }
    attn_ws_bytes_ = bytes;
    return Status::Ok();
  }

  void Fail(const std::string& msg) {
    if (error_.ok()) error_ = InvalidArgument(name_ + ": " + msg);
  }
  void Record(cudaError_t e, const char* what) {
    if (e == cudaSuccess) {
      if (times_.on() && !capturing_) times_.Mark(stream_, what);
      return;
    }
    cudaGetLastError();
    if (error_.ok()) error_ = Internal(name_ + ": " + what + ": " + CudaErr(e));
  }
  void MarkGemm(const char* op, int64_t n, int64_t k) {
    if (times_.on() && !capturing_)
      times_.Mark(stream_, std::string(op) + " (cuBLASLt " + std::to_string(n) + "x" + std::to_string(k) + ")");
  }
  bool Act(const char* op, std::initializer_list<const Tensor*> ts) {
    for (const Tensor* t : ts) {
      if (t->dtype != act_) {
        Fail(std::string(op) + ": a " + std::string(DTypeName(t->dtype)) + " tensor " + t->ShapeStr() +
             " where the backend computes in " + std::string(DTypeName(act_)));
        return false;
      }
    }
    return true;
  }
  bool F32(const char* op, const Tensor& t) {
    if (t.dtype == DType::kF32) return true;
    Fail(std::string(op) + ": expected an f32 tensor, got " + std::string(DTypeName(t.dtype)));
    return false;
  }
  bool I32(const char* op, const Tensor& t) {
    if (t.dtype == DType::kI32) return true;
    Fail(std::string(op) + ": expected i32 indices, got " + std::string(DTypeName(t.dtype)));
    return false;
  }
  // Copies n host elements of type st (e.g. an mmap'ed safetensors tensor) to device memory dst
  // (act dtype) through two pinned staging buffers: while chunk i's DMA (and conversion on the
  // GPU) runs, chunk i+1 is copied into the other buffer; nothing waits for the last chunk.
  Status CopyConverted(void* dst, const void* src, ElemType st, int64_t n) {
    KILN_RETURN_IF_ERROR(EnsureUploadStaging(st != et_));
    const size_t src_elem = cuda::ElemBytes(st), dst_elem = cuda::ElemBytes(et_);
    const int64_t chunk = static_cast<int64_t>(kUploadChunk / src_elem);
    for (int64_t off = 0, i = 0; off < n; off += chunk, ++i) {
      const int slot = static_cast<int>(i % 2);
      const int64_t m = std::min(chunk, n - off);
      cudaError_t e = cudaEventSynchronize(upload_done_[slot]);  // the DMA out of this buffer is over
      if (e != cudaSuccess) return Internal(name_ + ": weight upload: " + CudaErr(e));
      ParallelCopy(pinned_[slot], static_cast<const uint8_t*>(src) + off * src_elem, m * src_elem);
      void* dst_chunk = static_cast<uint8_t*>(dst) + off * dst_elem;
      void* landing = st == et_ ? dst_chunk : device_stage_[slot];
      e = cudaMemcpyAsync(landing, pinned_[slot], m * src_elem, cudaMemcpyHostToDevice, stream_);
      if (e == cudaSuccess && st != et_) e = cuda::LaunchConvert(device_stage_[slot], st, dst_chunk, et_, m, stream_);
      if (e == cudaSuccess) e = cudaEventRecord(upload_done_[slot], stream_);
      if (e != cudaSuccess) {
        cudaGetLastError();
        return Internal(name_ + ": weight upload: " + CudaErr(e));
      }
    }
    return Status::Ok();
  }
  Status EnsureUploadStaging(bool converting) {
    if (!pinned_[0]) {
      for (int i = 0; i < 2; ++i) {
        if (cudaHostAlloc(&pinned_[i], kUploadChunk, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&upload_done_[i], cudaEventDisableTiming) != cudaSuccess) {
          cudaGetLastError();
          return Status(ErrorCode::kOutOfMemory, name_ + ": cannot allocate pinned upload staging buffers");
        }
        cudaEventRecord(upload_done_[i], stream_);
      }
    }
    if (converting && !device_stage_[0]) {
      for (int i = 0; i < 2; ++i) {
        if (cudaMalloc(&device_stage_[i], kUploadChunk) != cudaSuccess) {
          cudaGetLastError();
          return Status(ErrorCode::kOutOfMemory, name_ + ": cannot allocate device upload staging buffers");
        }
      }
    }
    return Status::Ok();
  }
  // memcpy out of a (possibly cold) mmap: several threads fault pages in at once.
  static void ParallelCopy(void* dst, const void* src, size_t bytes) {
    constexpr size_t kPerThread = 4u << 20;
    const size_t parts = std::min<size_t>(8, (bytes + kPerThread - 1) / kPerThread);
    if (parts <= 1) {
      std::memcpy(dst, src, bytes);
      return;
    }
    const size_t step = (bytes + parts - 1) / parts;
    std::vector<std::thread> threads;
    for (size_t p = 1; p < parts; ++p) {
      const size_t b = p * step, e = std::min(bytes, b + step);
      if (b < e)
        threads.emplace_back([=] { std::memcpy(static_cast<uint8_t*>(dst) + b, static_cast<const uint8_t*>(src) + b, e - b); });
    }
    std::memcpy(dst, src, std::min(step, bytes));
    for (auto& t : threads) t.join();
  }

  static constexpr size_t kUploadChunk = 32u << 20;
  int device_;
  DType act_;
  ElemType et_ = ElemType::kF32;
  int num_sms_ = 0;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::LtGemm> lt_;
  void* attn_ws_ = nullptr;
  size_t attn_ws_bytes_ = 0;
  void* pinned_[2] = {nullptr, nullptr};        // host upload staging (pinned)
  void* device_stage_[2] = {nullptr, nullptr};  // device landing for converting uploads
  cudaEvent_t upload_done_[2] = {nullptr, nullptr};
  bool prefill_enabled_ = true;
  bool graphs_enabled_ = true;  // KILN_CUDA_GRAPHS=0 runs every step op by op
  bool fused_gated_ = false;
  bool fused_residual_ = true;
  bool fold_norm_ = true;  // RMSNorm weights folded into the next projection; one-token GEMVs normalise x
  bool split_mixed_ = true;  // KILN_CUDA_SPLIT_MIXED_ATTN=0: mixed steps wholly on the prefill kernel
  cuda::DecodeSplit decode_split_ = cuda::DecodeSplit::kAuto;
  bool capturing_ = false;
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  cuda::OpTimes times_;
  Status error_;
};

}  // namespace

bool CudaAvailable() {
  static const bool available = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return n > 0;
  }();
  return available;
}

Expected<std::unique_ptr<Backend>> MakeCudaBackend(int device, DType act_dtype) {
  if (act_dtype != DType::kF32 && act_dtype != DType::kF16 && act_dtype != DType::kBF16)
    return Unsupported("cuda: activations in " + std::string(DTypeName(act_dtype)) +
                       " are not supported (f32, f16 or bf16)");
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Unsupported("cuda: no usable CUDA device (" + CudaErr(e) + ")");
  }
  if (device < 0 || device >= n)
    return InvalidArgument("cuda: device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                           " device(s) found)");
  auto b = std::make_unique<CudaBackend>(device, act_dtype);
  KILN_RETURN_IF_ERROR(b->Init());
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace kiln
