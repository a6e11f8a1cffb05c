// The GLM family on one math: RMSNorm, SwiGLU with fused gate_up, qkv bias, and rotary on
// the first half of each head with interleaved pairs (2i, 2i+1).
//  - "glm" (transformers GlmForCausalLM), "glm4" (adds post-attention / post-MLP norms);
//  - "chatglm" (THUDM ChatGLM2/3 and GLM-4 remote code): transformer.encoder.layers.N.
//    self_attention.query_key_value ([q; k; v]), mlp.dense_h_to_4h ([gate; up]), ...
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureGlm(const json& hf, ModelConfig* c) {
  std::string type = ModelTypeOf(hf);
  if (type == "ChatGLMModel") type = "chatglm";
  c->norm = "rms";
  c->mlp = "gated";
  c->rope_interleaved = true;
  if (type != "chatglm") {
    c->architecture = type == "glm4" ? "glm4" : "glm";
    c->qkv_bias = hf.value("attention_bias", true);
    if (c->rotary_dim == 0) c->rotary_dim = c->head_dim / 2;  // partial_rotary_factor defaults to 0.5
    return Status::Ok();
  }
  c->architecture = "chatglm";
  if (!hf.value("rmsnorm", true))
    return Unsupported("config.json: ChatGLM with rmsnorm=false is not supported");
  if (!hf.value("original_rope", true))
    return Unsupported("config.json: ChatGLM with original_rope=false is not supported");
  if (hf.value("apply_residual_connection_post_layernorm", false))
    return Unsupported(
        "config.json: ChatGLM with apply_residual_connection_post_layernorm=true is not supported");
  if (hf.contains("kv_channels") && hf["kv_channels"].is_number_integer()) c->head_dim = hf["kv_channels"];
  c->n_kv_heads = c->n_heads;
  if (hf.value("multi_query_attention", false)) c->n_kv_heads = hf.value("multi_query_group_num", 1);
  c->qkv_bias = hf.value("add_qkv_bias", false);
  c->o_bias = c->mlp_bias = hf.value("add_bias_linear", false);
  c->rotary_dim = c->head_dim / 2;  // RotaryEmbedding(kv_channels // 2)
  double ratio = 1.0;
  KILN_RETURN_IF_ERROR(OptionalNumber(hf, "rope_ratio", &ratio));
  c->rope_theta = 10000.0 * ratio;
  c->tie_embeddings = false;
  return Status::Ok();
}

Status MapGlm(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  DecoderNames n;
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  if (c.architecture == "chatglm") {
    n.embed = "transformer.embedding.word_embeddings.weight";
    n.final_norm = "transformer.encoder.final_layernorm";
    n.lm_head = "transformer.output_layer";
    n.layers = "transformer.encoder.layers.";
    n.qkv = "self_attention.query_key_value";
    n.o = "self_attention.dense";
    n.gate_up = "mlp.dense_h_to_4h";
    n.down = "mlp.dense_4h_to_h";
  } else {
    n.embed = "model.embed_tokens.weight";
    n.final_norm = "model.norm";
    n.lm_head = "lm_head";
    n.layers = "model.layers.";
    n.q = "self_attn.q_proj";
    n.k = "self_attn.k_proj";
    n.v = "self_attn.v_proj";
    n.o = "self_attn.o_proj";
    n.gate_up = "mlp.gate_up_proj";
    n.down = "mlp.down_proj";
    if (c.architecture == "glm4") {
      n.post_attn_norm = "post_self_attn_layernorm";
      n.post_mlp_norm = "post_mlp_layernorm";
    }
  }
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kGlm(
    {"glm", {"glm", "glm4", "chatglm", "GlmForCausalLM", "ChatGLMModel"}, ConfigureGlm, MapGlm});

}  // namespace
}  // namespace kiln
