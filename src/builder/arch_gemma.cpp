// Gemma: GeGLU MLP, RMSNorm scaling by (1 + w), embeddings scaled by sqrt(hidden), tied head.
// Gemma-2 adds attention and final logit soft-capping, alternating sliding-window / full
// layers, norms after attention and MLP (sandwich), and query_pre_attn_scalar as the scale.
#include <cmath>

#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureGemma(const json& hf, ModelConfig* c) {
  const std::string type = ModelTypeOf(hf);
  const bool v2 = type == "gemma2" || type == "Gemma2ForCausalLM";
  c->architecture = v2 ? "gemma2" : "gemma";
  c->norm = "rms";
  c->norm_unit_offset = true;
  c->mlp = "gated";
  c->embedding_scale = std::sqrt(static_cast<double>(c->hidden_size));
  c->qkv_bias = c->o_bias = hf.value("attention_bias", false);
  // Gemma ties its head unless the config says otherwise.
  c->tie_embeddings = !hf.contains("tie_word_embeddings") || hf["tie_word_embeddings"].is_null() ||
                      hf["tie_word_embeddings"].get<bool>();
  // Gemma's activation is the tanh GELU; its early configs said "gelu" and HF corrected that.
  std::string act = "gelu_pytorch_tanh";
  if (hf.contains("hidden_activation") && hf["hidden_activation"].is_string())
    act = hf["hidden_activation"];
  else if (hf.contains("hidden_act") && hf["hidden_act"].is_string())
    act = hf["hidden_act"];
  if (act == "gelu" || act == "gelu_pytorch_tanh" || act == "gelu_new")
    c->activation = "gelu_tanh";
  else
    return Unsupported("config.json: unsupported Gemma activation '" + act + "'");
  if (!v2) return Status::Ok();

  double scalar = static_cast<double>(c->head_dim);
  KILN_RETURN_IF_ERROR(OptionalNumber(hf, "query_pre_attn_scalar", &scalar));
  if (!(scalar > 0)) return InvalidArgument("config.json: query_pre_attn_scalar must be positive");
  c->attn_scale = 1.0 / std::sqrt(scalar);
  KILN_RETURN_IF_ERROR(OptionalNumber(hf, "attn_logit_softcapping", &c->attn_softcap));
  KILN_RETURN_IF_ERROR(OptionalNumber(hf, "final_logit_softcapping", &c->final_softcap));
  int64_t window = 0;
  KILN_RETURN_IF_ERROR(OptionalWindow(hf, &window));
  if (window <= 0) return Status::Ok();
  // layer_types, else HF's default: even layers slide, odd layers are full.
  c->layer_sliding_window.assign(c->n_layers, 0);
  const json* types =
      hf.contains("layer_types") && hf["layer_types"].is_array() ? &hf["layer_types"] : nullptr;
  if (types && static_cast<int64_t>(types->size()) != c->n_layers)
    return InvalidArgument("config.json: layer_types has " + std::to_string(types->size()) + " entries for " +
                           std::to_string(c->n_layers) + " layers");
  for (int64_t i = 0; i < c->n_layers; ++i) {
    const bool sliding = types ? (*types)[i] == "sliding_attention" : i % 2 == 0;
    if (sliding) c->layer_sliding_window[i] = window;
  }
  return Status::Ok();
}

DecoderNames GemmaNames(bool v2) {
  DecoderNames n;
  n.embed = "model.embed_tokens.weight";
  n.final_norm = "model.norm";
  n.lm_head = "lm_head";
  n.layers = "model.layers.";
  n.attn_norm = "input_layernorm";
  n.q = "self_attn.q_proj";
  n.k = "self_attn.k_proj";
  n.v = "self_attn.v_proj";
  n.o = "self_attn.o_proj";
  n.gate = "mlp.gate_proj";
  n.up = "mlp.up_proj";
  n.down = "mlp.down_proj";
  if (v2) {
    n.post_attn_norm = "post_attention_layernorm";
    n.mlp_norm = "pre_feedforward_layernorm";
    n.post_mlp_norm = "post_feedforward_layernorm";
  } else {
    n.mlp_norm = "post_attention_layernorm";
  }
  return n;
}

Status MapGemma(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  return MapDecoder(c, ck, GemmaNames(c.architecture == "gemma2"), plan);
}

const ArchRegistrar kGemma(
    {"gemma", {"gemma", "gemma2", "GemmaForCausalLM", "Gemma2ForCausalLM"}, ConfigureGemma, MapGemma});

}  // namespace
}  // namespace kiln
