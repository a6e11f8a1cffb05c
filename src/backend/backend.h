// The ops the model needs, and nothing else. The model meets a backend only through this
// interface; backends never see the model. The CPU backend (backend/cpu) is the reference
// oracle; the CUDA backend (backend/cuda) must match it on random shapes.
//
// Conventions: activations are in act_dtype() (CPU: f32; CUDA: the engine's dtype, or f32 for
// exactness runs) with fp32 accumulation; weights in the engine's dtype. All ops are enqueued
// in order on the backend's stream; only the Copy*ToHost calls and Synchronize() block.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/tensor.h"
#include "kiln/status.h"

namespace kiln {

// Per-step batch description for attention over the paged KV cache. Tokens of all sequences
// are packed: sequence s owns query tokens [q_start[s], q_start[s+1]). Every tensor here is
// i32 backend memory written by the runtime before the step.
struct AttentionBatch {
  int n_seqs = 0;
  int n_tokens = 0;
  int max_q_len = 0;          // max over sequences of query tokens this step
  int max_seq_len = 0;        // max over sequences of seq_lens
  int max_blocks_per_seq = 0; // row stride of block_tables
  int block_size = 0;         // tokens per KV block
  int n_decode_seqs = 0;      // leading sequences with exactly one query token (decodes)
  Tensor positions;     // [n_tokens]  absolute position of each query token
  Tensor slot_mapping;  // [n_tokens]  block_id * block_size + offset where its K/V goes
  Tensor q_start;       // [n_seqs + 1]
  Tensor seq_lens;      // [n_seqs]    KV length of each sequence after this step
  Tensor block_tables;  // [n_seqs, max_blocks_per_seq] physical block ids
};

// K and V of one layer: [n_blocks, block_size, n_kv_heads, head_dim], act_dtype.
struct KvCacheLayer {
  Tensor k;
  Tensor v;
};

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// Rotary embedding: positions are rotated by inv_freq (f32 [rotary_dim / 2], scaling already
// folded in by the model) over the first rotary_dim dims of each head.
struct RopeSpec {
  int rotary_dim = 0;         // 0 = no rotary (learned/ALiBi positions)
  bool interleaved = false;   // pairs (2i, 2i+1) (GPT-J/GLM) instead of (i, i + rotary_dim/2)
  float attention_factor = 1.0f;  // multiplies cos/sin (YaRN mscale); 1 otherwise
  Tensor inv_freq;            // f32 [rotary_dim / 2]
};

struct AttentionParams {
  float scale = 1.0f;        // softmax scale, usually 1/sqrt(head_dim)
  int sliding_window = 0;    // 0 = full causal; else attend to the last `window` positions
  float softcap = 0.0f;      // 0 = off; else logits = softcap * tanh(logits / softcap)
  Tensor alibi_slopes;       // f32 [n_heads]; empty = no ALiBi
};

// Per-step description of a device sampling step (Backend::SampleRows); the layouts of the
// packed rows and penalty entries are in sampling/device_row.h. All tensors are backend memory.
struct DeviceSamplingBatch {
  Tensor rows;          // i32 [n, 16]  one DeviceSamplingRow per logits row
  Tensor penalties;     // i32 [n_penalties, 4]  DevicePenaltyEntry, grouped by row; may be empty
  int n_penalties = 0;
  bool any_logprobs = false;  // some row wants its chosen logprob or top logprobs
  Tensor workspace;     // f32 [n * (vocab + kDeviceSamplingRowScratch)] scratch (penalised logits, stats)
  Tensor top_ids;       // i32 [n, kMaxDeviceTopLogprobs] out: best first (first n_top_logprobs valid)
  Tensor top_logprobs;  // f32 [n, kMaxDeviceTopLogprobs] out
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         // "cpu", "cuda:0 (NVIDIA H100 ...)"
  virtual DType act_dtype() const = 0;

  // ---- memory ----
  virtual Expected<void*> Alloc(size_t bytes) = 0;
  virtual void Free(void* ptr) = 0;
  virtual Status CopyToDevice(void* dst, const void* src, size_t bytes) = 0;  // host -> backend
  virtual Status CopyToHost(void* dst, const void* src, size_t bytes) = 0;    // blocks
  // Converts src (any float dtype) to f32 host memory; blocks.
  virtual Status CopyToHostF32(float* dst, const Tensor& src) = 0;
  virtual Status Synchronize() = 0;
  // Prepares a weight for this backend from host bytes in `src_dtype` [rows, cols]; the
  // backend may convert or repack (CPU: keeps f16/bf16 as stored, converts on use).
  virtual Expected<Weight> UploadWeight(const void* src, DType src_dtype, int64_t rows, int64_t cols) = 0;
  // Fills a weight with seeded pseudo-random values (dummy-weight benchmark engines).
  virtual Expected<Weight> RandomWeight(DType dtype, int64_t rows, int64_t cols, uint64_t seed, float scale) = 0;

  // ---- ops (shapes in comments; n = tokens this step, d = hidden size) ----
  // out[n, d] = table[ids[n], :] * scale
  virtual void Embedding(Tensor out, const Weight& table, const Tensor& ids, float scale) = 0;
  // out = norm(x) * (w (+1 if unit_offset)) (+ b); RMSNorm when b is empty and rms is true; an
  // empty w is a unit weight.
  virtual void Norm(Tensor out, const Tensor& x, const Tensor& w, const Tensor& b, float eps, bool rms,
                    bool unit_offset) = 0;
  // residual += delta; out = norm(residual)   (fused residual add + norm)
  virtual void AddNorm(Tensor out, Tensor residual, const Tensor& delta, const Tensor& w, const Tensor& b,
                       float eps, bool rms, bool unit_offset) = 0;
  // out[m, n] = x[m, k] @ w[n, k]^T (+ bias[n])
  virtual void Linear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias) = 0;
  // qkv[n, (hq + 2*hkv) * hd]: optional per-head RMSNorm of q and k (q_norm/k_norm [hd]),
  // rotary on q and k in place, then K and V written to the cache at batch.slot_mapping.
  virtual void RopeWriteKv(Tensor qkv, const AttentionBatch& batch, const AttentionShape& shape,
                           const RopeSpec& rope, const Tensor& q_norm, const Tensor& k_norm, float norm_eps,
                           KvCacheLayer cache) = 0;
  // out[n, hq * hd] = causal attention of q (from qkv) over each sequence's cached K/V
  // (positions 0 .. position of the token, limited by the sliding window).
  virtual void Attention(Tensor out, const Tensor& qkv, const AttentionBatch& batch, const AttentionShape& shape,
                         const AttentionParams& params, KvCacheLayer cache) = 0;
  // Gated activations: out[n, f] = act(gate_up[n, :f]) * gate_up[n, f:]
  enum class Activation { kSilu, kGeluTanh, kGeluErf, kRelu };
  virtual void GatedActivation(Tensor out, const Tensor& gate_up, Activation act) = 0;
  // The gated MLP projection: out[m, f] = act(x @ gate^T + bg) * (x @ up^T + bu) with
  // w = gate_up [2f, k] (gate rows, then up rows) and bias f32 [2f] or empty. gate_up [m, 2f]
  // is scratch for the default (Linear, then GatedActivation); a backend may fuse and skip it.
  virtual void GatedLinear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias, Activation act,
                           Tensor gate_up);
  // residual[m, n] += x @ w^T + bias (the attention output and MLP down projections feeding the
  // residual stream). `scratch` [m, n] is for the default (Linear, then Add); a backend may
  // fuse and skip it.
  virtual void LinearResidual(Tensor residual, const Tensor& x, const Weight& w, const Tensor& bias, Tensor scratch);
  // out = (RMSNorm(x) * norm_w) @ w^T + bias; an empty norm_w is a unit weight (the norm's
  // weight folded into w, see FoldsNormWeights). `h` [m, k] is scratch for the default (Norm,
  // then Linear).
  virtual void NormLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w,
                          const Tensor& bias, Tensor h);
  // The same in front of the gated projection: out = GatedLinear(RMSNorm(x) * norm_w).
  virtual void NormGatedLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w,
                               const Tensor& bias, Activation act, Tensor h, Tensor gate_up);
  // Whether the model should fold each pre-norm RMSNorm weight into the projection after it
  // (ScaleWeightColumns, then NormLinear with an empty norm_w): worth it where NormLinear can
  // then skip the norm pass. Exact up to one rounding of the folded weights.
  virtual bool FoldsNormWeights() const { return false; }
  // w[:, j] *= scale[j] in place (scale f32 [in_features]).
  virtual Status ScaleWeightColumns(Weight& w, const Tensor& scale);
  // In place: x = act(x)
  virtual void ActivationInPlace(Tensor x, Activation act) = 0;
  // out = a + b (same shapes)
  virtual void Add(Tensor out, const Tensor& a, const Tensor& b) = 0;
  // out[m, d] = x[idx[m], :]
  virtual void GatherRows(Tensor out, const Tensor& x, const Tensor& idx) = 0;
  // In place: x = cap * tanh(x / cap)
  virtual void Softcap(Tensor x, float cap) = 0;

  // ---- sparse MoE (Mixtral). Not pure: the defaults (backend_moe.cpp) compose the ops above
  // with a host round trip of the routing, correct on any backend but slow; override them. ----
  // probs = softmax(router_logits[n, E]) in f32; per token the k largest (ties: lower expert
  // id) -> ids[n, k] (i32, descending probability) and weights[n, k] (f32; divided by their
  // sum when renormalize).
  virtual void MoeRoute(Tensor ids, Tensor weights, const Tensor& router_logits, int k, bool renormalize);
  // out[n, d] = sum_j weights[n, j] * down[e](act(gate) * up), gate|up = gate_up[e] @ x[n],
  // e = ids[n, j]. gate_up[e]: [2f, d] (gate rows then up rows); down[e]: [d, f].
  virtual void MoeExperts(Tensor out, const Tensor& x, const std::vector<Weight>& gate_up,
                          const std::vector<Weight>& down, const Tensor& ids, const Tensor& weights,
                          Activation act);

  // ---- greedy sampling on the device ----
  // ids[r] (i32 [n]) = argmax of logits[r, :] with the host sampler's rule (NaN as -inf, lowest
  // id on ties, all -inf -> 0). The default brings the logits to the host; CUDA overrides it.
  virtual void ArgmaxRows(Tensor ids, const Tensor& logits);

  // ---- device sampling (the whole chain of src/sampling on the device) ----
  // ids[r] (i32 [n]) = the host Sampler's draw for logits row r (penalties -> temperature ->
  // top-k -> top-p -> min-p -> seeded draw), with the parameters, draw counter and penalty
  // history of batch.rows[r]. logprobs (f32 [n], may be empty) = log-softmax of the raw logits
  // at ids[r] for rows that ask; batch.top_ids/top_logprobs get each row's top logprobs. Only
  // ids/logprobs/top lists are meant to travel back to the host. The default brings the logits
  // to the host and runs the host Sampler (bit-identical to it); CUDA overrides it.
  virtual void SampleRows(Tensor ids, Tensor logprobs, const Tensor& logits, const DeviceSamplingBatch& batch);

  // ---- step graphs (CUDA graphs; the CPU backend has none) ----
  // A decode step is a fixed sequence of ops over fixed buffers: record it once, replay it
  // with one launch. Keys are the caller's; a backend may drop every graph at any time, so
  // callers always handle "not recorded". Every op must be recordable: no host sync, no
  // allocation (the CUDA attention kernels need no workspace).
  virtual bool SupportsGraphs() const { return false; }
  // Enqueues the graph recorded under `key`; false (nothing enqueued) when there is none.
  virtual Expected<bool> ReplayGraph(uint64_t key);
  // Records the ops `enqueue` issues as the graph `key`, then enqueues it once.
  virtual Status CaptureGraph(uint64_t key, const std::function<Status()>& enqueue);

  // ---- measurement (benchmarks) ----
  // Copy bandwidth of this device in GB/s, counting bytes read plus bytes written, over
  // buffers of `bytes` each (median of several timed copies after warm-up).
  virtual Expected<double> MeasureCopyBandwidth(size_t bytes);
};

// CPU reference backend (OpenMP).
std::unique_ptr<Backend> MakeCpuBackend();
// CUDA backend on `device`; an error when built without CUDA or no GPU is present.
// act_dtype: f32 for exactness runs, else the engine dtype (bf16/f16).
Expected<std::unique_ptr<Backend>> MakeCudaBackend(int device, DType act_dtype);
// True when a CUDA device is usable (built with CUDA and a GPU present).
bool CudaAvailable();

// RAII backend allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend* b, void* p, size_t n) : backend_(b), ptr_(p), bytes_(n) {}
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      backend_ = o.backend_;
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
    }
    return *this;
  }
  void Reset() {
    if (ptr_ && backend_) backend_->Free(ptr_);
    ptr_ = nullptr;
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

Expected<DeviceBuffer> AllocBuffer(Backend& b, size_t bytes);

}  // namespace kiln
