// Launchers of the CUDA kernels: raw device pointers + a stream, no runtime types.
// Every launcher returns the launch's cudaError_t (cudaSuccess when it was enqueued).
// Element types: all activations and weights of one call share `t` (f32, f16 or bf16);
// norm weights, biases, inv_freq and ALiBi slopes are always f32; indices are int32.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kiln::cuda {

enum class ElemType { kF32, kF16, kBF16 };
inline size_t ElemBytes(ElemType t) { return t == ElemType::kF32 ? 4 : 2; }

// Activations, same numbering as Backend::Activation.
enum class Act { kSilu = 0, kGeluTanh = 1, kGeluErf = 2, kRelu = 3 };

// ---- convert.cu ----
// dst[i] = src[i] converted (f32/f16/bf16 either way).
cudaError_t LaunchConvert(const void* src, ElemType src_t, void* dst, ElemType dst_t, int64_t n, cudaStream_t s);
// dst[i] = uniform(-scale, scale) from a counter-based hash of (seed, i).
cudaError_t LaunchRandomFill(void* dst, ElemType t, int64_t n, uint64_t seed, float scale, cudaStream_t s);

// ---- gather.cu ----
// out[i, :] = src[idx[i], :] * scale     out [n_rows, d], src [*, d]
cudaError_t LaunchGatherRows(void* out, const void* src, const int32_t* idx, int64_t n_rows, int64_t d, float scale,
                             ElemType t, cudaStream_t s);

// ---- norm.cu ----
// If delta: x += delta (x is the residual stream, written back). Then out = norm(x) * (w (+1)) (+ b).
// x, out, delta: [rows, cols] (out may alias x); w, b: f32 [cols] (b may be null).
cudaError_t LaunchNorm(void* out, void* x, const void* delta, const float* w, const float* b, int64_t rows,
                       int64_t cols, float eps, bool rms, bool unit_offset, ElemType t, cudaStream_t s);

// ---- elementwise.cu ----
// out[r, j] = act(gu[r, j]) * gu[r, f + j]      gu [rows, 2f], out [rows, f]
cudaError_t LaunchGatedAct(void* out, const void* gate_up, int64_t rows, int64_t f, Act act, ElemType t,
                           cudaStream_t s);
cudaError_t LaunchActInPlace(void* x, int64_t n, Act act, ElemType t, cudaStream_t s);
cudaError_t LaunchAdd(void* out, const void* a, const void* b, int64_t n, ElemType t, cudaStream_t s);
cudaError_t LaunchSoftcap(void* x, int64_t n, float cap, ElemType t, cudaStream_t s);
// out[r, j] += bias[j]      out [rows, cols], bias f32 [cols]
cudaError_t LaunchAddBias(void* out, const float* bias, int64_t rows, int64_t cols, ElemType t, cudaStream_t s);
// w[r, j] *= scale[j] in place     w [rows, cols], scale f32 [cols] (folding a norm weight into w)
cudaError_t LaunchScaleColumns(void* w, const float* scale, int64_t rows, int64_t cols, ElemType t, cudaStream_t s);

// ---- argmax.cu ----
// out[r] = argmax_j logits[r, j] (NaN as -inf, lowest id on ties)    logits [rows, vocab]
cudaError_t LaunchArgmaxRows(int32_t* out, const void* logits, int64_t rows, int64_t vocab, ElemType t,
                             cudaStream_t s);

// ---- gemv.cu ----
// Streaming skinny GEMM for small m: out[m, n] = x[m, k] @ w[n, k]^T (+ bias[n]).
constexpr int kGemvMaxM = 16;
cudaError_t LaunchGemv(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t n, int64_t k,
                       ElemType t, cudaStream_t s);
// Fusions around the skinny GEMM (out [m, n] = x @ w^T + bias unless stated):
struct GemvFuse {
  int64_t gated_f = 0;            // > 0: n = 2 gated_f; out [m, gated_f] = act(gate) * up
  Act act = Act::kSilu;
  void* residual = nullptr;       // residual [m, n] += the result (out is not written)
  // > 0 (m = 1 only): the kernel RMS-normalises x itself, x / sqrt(mean(x^2) + rms_eps), with a
  // unit weight (the norm's weight is folded into w at load).
  float rms_eps = 0.0f;
};
cudaError_t LaunchGemvFused(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t n,
                            int64_t k, const GemvFuse& fuse, ElemType t, cudaStream_t s);
// Gated form for the MLP: w = [2f, k] (gate rows, then up rows), bias f32 [2f] or null;
// out[m, f] = act(x @ gate^T + bg) * (x @ up^T + bu), gate and up rounded to t first.
constexpr int kGemvGatedMaxM = 8;
cudaError_t LaunchGemvGated(void* out, const void* x, const void* w, const float* bias, int64_t m, int64_t f,
                            int64_t k, Act act, ElemType t, cudaStream_t s);

// ---- rope_kv.cu ----
struct RopeKvArgs {
  void* qkv = nullptr;            // [n_tokens, (hq + 2 hkv) * hd], rotated in place
  void* k_cache = nullptr;        // [n_blocks, block_size, hkv, hd]
  void* v_cache = nullptr;
  const int32_t* positions = nullptr;  // [n_tokens]
  const int32_t* slots = nullptr;      // [n_tokens]
  const float* inv_freq = nullptr;     // [rotary_dim / 2]
  const float* q_norm = nullptr;       // [hd] or null
  const float* k_norm = nullptr;       // [hd] or null
  int n_tokens = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int rotary_dim = 0;
  bool interleaved = false;
  float attention_factor = 1.0f;
  float eps = 1e-6f;
};
cudaError_t LaunchRopeWriteKv(const RopeKvArgs& a, ElemType t, cudaStream_t s);

// ---- attention (decode_attention.cu, prefill_attention.cu) ----
struct AttnArgs {
  void* out = nullptr;            // [n_tokens, hq * hd]
  const void* qkv = nullptr;      // [n_tokens, (hq + 2 hkv) * hd]
  const void* k_cache = nullptr;  // [n_blocks, block_size, hkv, hd]
  const void* v_cache = nullptr;
  const int32_t* positions = nullptr;     // [n_tokens]
  const int32_t* q_start = nullptr;       // [n_seqs + 1]
  const int32_t* seq_lens = nullptr;      // [n_seqs]
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
  const float* alibi = nullptr;           // [hq] or null
  int n_seqs = 0, n_tokens = 0, max_q_len = 0, max_seq_len = 0, max_blocks_per_seq = 0, block_size = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  int sliding_window = 0;
  float softcap = 0.0f;
};
// Split-K paged attention, one query token per block row; works for any batch (used for decode
// and as the general fallback). A split's ranks merge inside a thread-block cluster. Large
// decode-only batches (one token per sequence) run a persistent stream-K kernel instead, which
// needs DecodeAttentionWorkspaceBytes() of workspace (0 when it is not used): zero it once when
// it is allocated (each launch leaves its counters at zero again), one head shape per workspace.
// With no workspace the cluster kernel runs. kAuto picks by size; the others force a kernel.
enum class DecodeSplit { kAuto, kClusters, kStreamK };
size_t DecodeAttentionWorkspaceBytes(const AttnArgs& a, ElemType t, int num_sms, DecodeSplit mode = DecodeSplit::kAuto);
cudaError_t LaunchDecodeAttention(const AttnArgs& a, ElemType t, void* workspace, int num_sms, cudaStream_t s,
                                  DecodeSplit mode = DecodeSplit::kAuto);
// Tensor-core (mma.sync) flash attention over the paged cache for f16/bf16 prefill.
// Returns cudaErrorNotSupported for shapes it does not cover (the caller falls back).
bool PrefillAttentionSupported(const AttnArgs& a, ElemType t);
cudaError_t LaunchPrefillAttention(const AttnArgs& a, ElemType t, cudaStream_t s);

}  // namespace kiln::cuda
