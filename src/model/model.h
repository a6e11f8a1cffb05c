// ONE generic decoder, driven by ModelConfig. It owns the weights (on a Backend) and the
// activation workspace; the runtime owns the paged KV cache and the step metadata.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend/backend.h"
#include "format/engine_config.h"

namespace kiln {

struct LayerWeights {
  Tensor attn_norm_w, attn_norm_b;  // f32 [d]
  Weight qkv;                       // [(hq + 2*hkv) * hd, d]
  Tensor qkv_bias;                  // f32 [(hq + 2*hkv) * hd]
  Tensor q_norm, k_norm;            // f32 [hd] (qk_norm only)
  Weight o;                         // [d, hq * hd]
  Tensor o_bias;                    // f32 [d]
  Tensor post_attn_norm_w;          // f32 [d] (Gemma-2: norm of the attention output)
  Tensor mlp_norm_w, mlp_norm_b;    // f32 [d] (absent with parallel residual sharing one norm)
  Weight gate_up;                   // gated: [2f, d] (gate rows then up rows); plain: [f, d]
  Tensor gate_up_bias;              // f32
  Weight down;                      // [d, f]
  Tensor down_bias;                 // f32 [d]
  Tensor post_mlp_norm_w;           // f32 [d] (Gemma-2: norm of the MLP output)
  Weight router;                    // MoE: [n_experts, d]
  std::vector<Weight> expert_gate_up;  // MoE: per expert [2f, d]
  std::vector<Weight> expert_down;     // MoE: per expert [d, f]
  // A pre-norm RMSNorm block (Llama, Qwen, Mistral, Phi-3, ...): it runs on the fusable ops
  // (NormLinear, LinearResidual). When the backend folds norm weights, attn_norm_w and
  // mlp_norm_w are empty and scaled into qkv and gate_up instead.
  bool pre_norm = false;
};

// One step's inputs, in backend memory, written by the runtime.
struct StepInputs {
  Tensor token_ids;     // i32 [n_tokens]
  AttentionBatch batch;
  Tensor logit_rows;    // i32 [n_logits] rows of the packed tokens whose logits are wanted
  int n_logits = 0;
};

class Model {
 public:
  using Progress = std::function<void(size_t done, size_t total)>;
  // Loads <engine_dir>/config.json and rank0.safetensors (or generates dummy weights).
  static Expected<std::unique_ptr<Model>> Load(const std::string& engine_dir, Backend& backend,
                                               const Progress& progress = {});
  ~Model();

  const EngineConfig& engine_config() const { return config_; }
  const ModelConfig& config() const { return config_.model; }
  Backend& backend() { return backend_; }
  size_t weight_bytes() const { return weight_bytes_; }
  double load_seconds() const { return load_seconds_; }  // Load(): weights read, uploaded, synced

  // Sizes the activation workspace for up to `max_tokens` tokens and `max_logits` logit rows
  // per step. Called once (again only to grow); pointers stay stable between calls.
  Status Reserve(int64_t max_tokens, int64_t max_logits);
  int64_t max_tokens() const { return max_tokens_; }
  int64_t max_logits() const { return max_logits_; }

  // Runs the decoder over the packed tokens and returns logits [n_logits, vocab] (act dtype,
  // backend memory owned by the model, valid until the next Forward).
  Expected<Tensor> Forward(const StepInputs& in, std::vector<KvCacheLayer>& cache);

  // Decode steps recorded as replayable graphs so far (CUDA backend; 0 elsewhere).
  int graphs_recorded() const { return graphs_recorded_; }

  // RoPE inverse frequencies for the positions this step reaches (dynamic scaling only
  // changes them with length); uploads when they change.
  Status UpdateRope(int64_t seq_len);

 private:
  Model(Backend& b) : backend_(b) {}
  // Marks the pre-norm layers and, where the backend wants it, folds their RMSNorm weights
  // into the projections after them (LayerWeights::pre_norm).
  Status FoldNormWeights();
  Status LoadWeights(const std::string& engine_dir, const Progress& progress);
  Status GenerateDummyWeights(const Progress& progress);
  Tensor Scratch(size_t index, std::initializer_list<int64_t> dims);
  // Enqueues every op of one step (no host work: it may be recorded as a graph).
  void Enqueue(const StepInputs& in, std::vector<KvCacheLayer>& cache);
  bool GraphEligible(const StepInputs& in) const;

  Backend& backend_;
  EngineConfig config_;
  std::vector<DeviceBuffer> owned_;  // every weight and buffer allocation
  Weight embed_;                     // [V, d]
  Tensor pos_embed_;                 // learned positions [max_pos, d] (act dtype)
  Tensor embed_norm_w_, embed_norm_b_;
  std::vector<LayerWeights> layers_;
  Tensor final_norm_w_, final_norm_b_;
  Weight lm_head_;                   // [V, d]; aliases embed_ when tied
  Tensor lm_head_bias_;
  Tensor alibi_slopes_;              // f32 [hq]
  RopeSpec rope_;
  int64_t rope_len_ = -1;
  size_t weight_bytes_ = 0;
  double load_seconds_ = 0;

  int64_t max_tokens_ = 0, max_logits_ = 0;
  std::vector<DeviceBuffer> scratch_;
  bool graphs_failed_ = false;
  int graphs_recorded_ = 0;
  uint64_t reserve_epoch_ = 0;
  std::unordered_set<uint64_t> graph_seen_;  // decode shapes run once op by op
};

}  // namespace kiln
