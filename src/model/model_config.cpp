#include "model/model_config.h"

#include <cmath>

namespace kiln {

using json = nlohmann::json;

json ModelConfig::ToJson() const {
  json rs = {{"type", rope_scaling.type},
             {"factor", rope_scaling.factor},
             {"low_freq_factor", rope_scaling.low_freq_factor},
             {"high_freq_factor", rope_scaling.high_freq_factor},
             {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings},
             {"beta_fast", rope_scaling.beta_fast},
             {"beta_slow", rope_scaling.beta_slow},
             {"attention_factor", rope_scaling.attention_factor}};
  return json{{"architecture", architecture},
              {"hidden_size", hidden_size},
              {"n_layers", n_layers},
              {"n_heads", n_heads},
              {"n_kv_heads", n_kv_heads},
              {"head_dim", head_dim},
              {"intermediate_size", intermediate_size},
              {"vocab_size", vocab_size},
              {"max_position_embeddings", max_position_embeddings},
              {"norm", norm},
              {"norm_eps", norm_eps},
              {"norm_unit_offset", norm_unit_offset},
              {"position", position},
              {"rope_theta", rope_theta},
              {"rotary_dim", rotary_dim},
              {"rope_interleaved", rope_interleaved},
              {"rope_scaling", rs},
              {"qkv_bias", qkv_bias},
              {"o_bias", o_bias},
              {"qk_norm", qk_norm},
              {"sliding_window", sliding_window},
              {"layer_sliding_window", layer_sliding_window},
              {"attn_scale", attn_scale},
              {"attn_softcap", attn_softcap},
              {"final_softcap", final_softcap},
              {"mlp", mlp},
              {"activation", activation},
              {"mlp_bias", mlp_bias},
              {"n_experts", n_experts},
              {"n_experts_per_tok", n_experts_per_tok},
              {"moe_renormalize", moe_renormalize},
              {"parallel_residual", parallel_residual},
              {"tie_embeddings", tie_embeddings},
              {"embedding_scale", embedding_scale},
              {"bos_id", bos_id},
              {"eos_ids", eos_ids}};
}

namespace {

// Reads an optional field with a type check; the error names the field.
template <typename T>
Status Get(const json& j, const char* key, T* out, const std::string& where, bool required = false) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return InvalidArgument(where + ": missing field '" + key + "'");
    return Status::Ok();
  }
  try {
    *out = j[key].get<T>();
  } catch (const std::exception&) {
    return InvalidArgument(where + ": field '" + key + "' has the wrong type (" + j[key].dump() + ")");
  }
  return Status::Ok();
}

}  // namespace

Expected<ModelConfig> ModelConfig::FromJson(const json& j, const std::string& where) {
  if (!j.is_object()) return InvalidArgument(where + ": 'model' is not an object");
  ModelConfig c;
  KILN_RETURN_IF_ERROR(Get(j, "architecture", &c.architecture, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "hidden_size", &c.hidden_size, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "n_layers", &c.n_layers, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "n_heads", &c.n_heads, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "n_kv_heads", &c.n_kv_heads, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "head_dim", &c.head_dim, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "intermediate_size", &c.intermediate_size, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "vocab_size", &c.vocab_size, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "max_position_embeddings", &c.max_position_embeddings, where, true));
  KILN_RETURN_IF_ERROR(Get(j, "norm", &c.norm, where));
  KILN_RETURN_IF_ERROR(Get(j, "norm_eps", &c.norm_eps, where));
  KILN_RETURN_IF_ERROR(Get(j, "norm_unit_offset", &c.norm_unit_offset, where));
  KILN_RETURN_IF_ERROR(Get(j, "position", &c.position, where));
  KILN_RETURN_IF_ERROR(Get(j, "rope_theta", &c.rope_theta, where));
  KILN_RETURN_IF_ERROR(Get(j, "rotary_dim", &c.rotary_dim, where));
  KILN_RETURN_IF_ERROR(Get(j, "rope_interleaved", &c.rope_interleaved, where));
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& r = j["rope_scaling"];
    const std::string w = where + ".rope_scaling";
    KILN_RETURN_IF_ERROR(Get(r, "type", &c.rope_scaling.type, w));
    KILN_RETURN_IF_ERROR(Get(r, "factor", &c.rope_scaling.factor, w));
    KILN_RETURN_IF_ERROR(Get(r, "low_freq_factor", &c.rope_scaling.low_freq_factor, w));
    KILN_RETURN_IF_ERROR(Get(r, "high_freq_factor", &c.rope_scaling.high_freq_factor, w));
    KILN_RETURN_IF_ERROR(
        Get(r, "original_max_position_embeddings", &c.rope_scaling.original_max_position_embeddings, w));
    KILN_RETURN_IF_ERROR(Get(r, "beta_fast", &c.rope_scaling.beta_fast, w));
    KILN_RETURN_IF_ERROR(Get(r, "beta_slow", &c.rope_scaling.beta_slow, w));
    KILN_RETURN_IF_ERROR(Get(r, "attention_factor", &c.rope_scaling.attention_factor, w));
  }
  KILN_RETURN_IF_ERROR(Get(j, "qkv_bias", &c.qkv_bias, where));
  KILN_RETURN_IF_ERROR(Get(j, "o_bias", &c.o_bias, where));
  KILN_RETURN_IF_ERROR(Get(j, "qk_norm", &c.qk_norm, where));
  KILN_RETURN_IF_ERROR(Get(j, "sliding_window", &c.sliding_window, where));
  KILN_RETURN_IF_ERROR(Get(j, "layer_sliding_window", &c.layer_sliding_window, where));
  KILN_RETURN_IF_ERROR(Get(j, "attn_scale", &c.attn_scale, where));
  KILN_RETURN_IF_ERROR(Get(j, "attn_softcap", &c.attn_softcap, where));
  KILN_RETURN_IF_ERROR(Get(j, "final_softcap", &c.final_softcap, where));
  KILN_RETURN_IF_ERROR(Get(j, "mlp", &c.mlp, where));
  KILN_RETURN_IF_ERROR(Get(j, "activation", &c.activation, where));
  KILN_RETURN_IF_ERROR(Get(j, "mlp_bias", &c.mlp_bias, where));
  KILN_RETURN_IF_ERROR(Get(j, "n_experts", &c.n_experts, where));
  KILN_RETURN_IF_ERROR(Get(j, "n_experts_per_tok", &c.n_experts_per_tok, where));
  KILN_RETURN_IF_ERROR(Get(j, "moe_renormalize", &c.moe_renormalize, where));
  KILN_RETURN_IF_ERROR(Get(j, "parallel_residual", &c.parallel_residual, where));
  KILN_RETURN_IF_ERROR(Get(j, "tie_embeddings", &c.tie_embeddings, where));
  KILN_RETURN_IF_ERROR(Get(j, "embedding_scale", &c.embedding_scale, where));
  KILN_RETURN_IF_ERROR(Get(j, "bos_id", &c.bos_id, where));
  KILN_RETURN_IF_ERROR(Get(j, "eos_ids", &c.eos_ids, where));
  KILN_RETURN_IF_ERROR(c.Validate(where));
  return c;
}

Status ModelConfig::Validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name) -> Status {
    if (v <= 0) return InvalidArgument(where + ": '" + name + "' must be positive, got " + std::to_string(v));
    if (v > (int64_t{1} << 31)) return InvalidArgument(where + ": '" + name + "' is implausibly large");
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(positive(hidden_size, "hidden_size"));
  KILN_RETURN_IF_ERROR(positive(n_layers, "n_layers"));
  KILN_RETURN_IF_ERROR(positive(n_heads, "n_heads"));
  KILN_RETURN_IF_ERROR(positive(n_kv_heads, "n_kv_heads"));
  KILN_RETURN_IF_ERROR(positive(head_dim, "head_dim"));
  KILN_RETURN_IF_ERROR(positive(intermediate_size, "intermediate_size"));
  KILN_RETURN_IF_ERROR(positive(vocab_size, "vocab_size"));
  KILN_RETURN_IF_ERROR(positive(max_position_embeddings, "max_position_embeddings"));
  if (n_heads % n_kv_heads != 0)
    return InvalidArgument(where + ": n_heads (" + std::to_string(n_heads) + ") is not a multiple of n_kv_heads (" +
                           std::to_string(n_kv_heads) + ")");
  if (norm != "rms" && norm != "layer") return InvalidArgument(where + ": unknown norm '" + norm + "'");
  if (position != "rope" && position != "learned" && position != "alibi")
    return InvalidArgument(where + ": unknown position kind '" + position + "'");
  if (effective_rotary_dim() > head_dim || effective_rotary_dim() % 2 != 0)
    return InvalidArgument(where + ": rotary_dim " + std::to_string(rotary_dim) + " must be even and <= head_dim");
  static const char* kScalings[] = {"default", "linear", "dynamic", "llama3", "yarn"};
  bool known = false;
  for (auto* s : kScalings) known |= rope_scaling.type == s;
  if (!known) return Unsupported(where + ": unknown rope scaling type '" + rope_scaling.type + "'");
  if (mlp != "gated" && mlp != "plain") return InvalidArgument(where + ": unknown mlp kind '" + mlp + "'");
  if (activation != "silu" && activation != "gelu_tanh" && activation != "gelu" && activation != "relu")
    return Unsupported(where + ": unknown activation '" + activation + "'");
  if (!(norm_eps > 0)) return InvalidArgument(where + ": norm_eps must be positive");
  if (!layer_sliding_window.empty() && static_cast<int64_t>(layer_sliding_window.size()) != n_layers)
    return InvalidArgument(where + ": layer_sliding_window has " + std::to_string(layer_sliding_window.size()) +
                           " entries for " + std::to_string(n_layers) + " layers");
  for (int64_t w : layer_sliding_window)
    if (w < 0) return InvalidArgument(where + ": layer_sliding_window entries must be >= 0");
  if (n_experts < 0 || n_experts > 4096) return InvalidArgument(where + ": n_experts must be in [0, 4096]");
  if (n_experts > 0 && (n_experts_per_tok <= 0 || n_experts_per_tok > n_experts))
    return InvalidArgument(where + ": n_experts_per_tok must be in [1, n_experts=" + std::to_string(n_experts) + "]");
  if (n_experts > 0 && mlp != "gated") return Unsupported(where + ": MoE experts must be gated MLPs");
  return Status::Ok();
}

std::vector<float> RopeInvFreq(const ModelConfig& c, int64_t seq_len, float* attention_factor) {
  const int64_t dim = c.effective_rotary_dim();
  const auto& rs = c.rope_scaling;
  double base = c.rope_theta;
  *attention_factor = 1.0f;
  if (rs.type == "dynamic" && rs.factor > 1.0) {
    const double orig = rs.original_max_position_embeddings > 0 ? rs.original_max_position_embeddings
                                                                : c.max_position_embeddings;
    if (static_cast<double>(seq_len) > orig)
      base *= std::pow(rs.factor * seq_len / orig - (rs.factor - 1.0), static_cast<double>(dim) / (dim - 2));
  }
  std::vector<double> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    // HF computes this in float32; round the exponent input the same way.
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = static_cast<float>(1.0 / std::pow(base, static_cast<double>(e)));
  }
  if (rs.type == "linear") {
    for (auto& v : inv) v /= rs.factor;
  } else if (rs.type == "llama3") {
    const double old_ctx = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wl = old_ctx / rs.low_freq_factor, high_wl = old_ctx / rs.high_freq_factor;
    for (auto& v : inv) {
      const double wl = 2 * M_PI / v;
      if (wl > low_wl) {
        v = v / rs.factor;
      } else if (wl >= high_wl) {
        const double smooth = (old_ctx / wl - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        v = (1 - smooth) * v / rs.factor + smooth * v;
      }
    }
  } else if (rs.type == "yarn") {
    const double orig = rs.original_max_position_embeddings > 0 ? rs.original_max_position_embeddings
                                                                : c.max_position_embeddings;
    auto corr_dim = [&](double rot) { return dim * std::log(orig / (rot * 2 * M_PI)) / (2 * std::log(base)); };
    double low = std::max(0.0, std::floor(corr_dim(rs.beta_fast)));
    double high = std::min(static_cast<double>(dim - 1), std::ceil(corr_dim(rs.beta_slow)));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const double extrap = 1.0 - ramp;
      const double pos_freq = 1.0 / inv[i];
      inv[i] = (1.0 / (rs.factor * pos_freq)) * (1 - extrap) + (1.0 / pos_freq) * extrap;
    }
    double af = rs.attention_factor;
    if (af <= 0) af = rs.factor <= 1 ? 1.0 : 0.1 * std::log(rs.factor) + 1.0;
    *attention_factor = static_cast<float>(af);
  }
  std::vector<float> out(inv.begin(), inv.end());
  return out;
}

}  // namespace kiln
