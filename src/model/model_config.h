// The model facts of an engine: the "model" section of the engine's config.json
// (docs/ENGINE_FORMAT.md). One generic decoder is driven entirely by this struct.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3 | yarn
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;  // yarn
  double attention_factor = 0.0;             // yarn; 0 = derived
};

struct ModelConfig {
  std::string architecture;  // arch_table key: "llama", "qwen2", "qwen3", "mistral", ...
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;

  std::string norm = "rms";  // rms | layer
  double norm_eps = 1e-5;
  bool norm_unit_offset = false;  // Gemma: x * (1 + w)

  std::string position = "rope";  // rope | learned | alibi
  double rope_theta = 10000.0;
  int64_t rotary_dim = 0;  // 0 = head_dim
  bool rope_interleaved = false;
  RopeScaling rope_scaling;

  bool qkv_bias = false;
  bool o_bias = false;
  bool qk_norm = false;  // Qwen3: per-head RMSNorm of q and k before rotary
  int64_t sliding_window = 0;
  // Per-layer attention window (0 = full causal), e.g. Gemma-2's alternating sliding/full
  // layers; empty = every layer uses sliding_window.
  std::vector<int64_t> layer_sliding_window;
  double attn_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  double attn_softcap = 0.0;
  double final_softcap = 0.0;

  std::string mlp = "gated";         // gated (gate_up) | plain (up -> act -> down)
  std::string activation = "silu";   // silu | gelu_tanh | gelu | relu
  bool mlp_bias = false;
  // Sparse MoE (Mixtral): n_experts > 0 replaces the MLP by a router [n_experts, d] and
  // n_experts gated experts; each token uses its top n_experts_per_tok experts, weighted by
  // the softmax of the router logits (renormalised over the chosen experts if moe_renormalize).
  int64_t n_experts = 0;
  int64_t n_experts_per_tok = 0;
  bool moe_renormalize = true;
  bool parallel_residual = false;
  bool tie_embeddings = false;
  double embedding_scale = 1.0;

  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  int64_t effective_rotary_dim() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
  int64_t layer_window(int64_t layer) const {
    return layer_sliding_window.empty() ? sliding_window : layer_sliding_window[layer];
  }

  nlohmann::json ToJson() const;
  static Expected<ModelConfig> FromJson(const nlohmann::json& j, const std::string& where);
  Status Validate(const std::string& where) const;
};

// Rotary inverse frequencies [rotary_dim / 2] with the scaling folded in (linear, llama3,
// yarn; dynamic NTK uses `seq_len`), and the cos/sin attention factor (yarn mscale).
std::vector<float> RopeInvFreq(const ModelConfig& c, int64_t seq_len, float* attention_factor);

}  // namespace kiln
