// Phi-2 ("phi"): LayerNorm, partial rotary, attention and MLP in parallel from one norm,
// biases everywhere incl. the head. Phi-3: Llama math with fused qkv_proj and gate_up_proj.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigurePhi(const json& hf, ModelConfig* c) {
  const std::string type = ModelTypeOf(hf);
  if (type == "phi3" || type == "Phi3ForCausalLM") {
    c->architecture = "phi3";
    c->norm = "rms";
    c->mlp = "gated";
    KILN_RETURN_IF_ERROR(OptionalWindow(hf, &c->sliding_window));
    return Status::Ok();
  }
  c->architecture = "phi";
  if (hf.value("qk_layernorm", false))
    return Unsupported(
        "config.json: Phi with qk_layernorm=true (per-head LayerNorm of q and k) is not supported");
  c->norm = "layer";
  c->mlp = "plain";
  c->qkv_bias = c->o_bias = c->mlp_bias = true;
  c->parallel_residual = true;  // x + attn(ln(x)) + mlp(ln(x))
  return Status::Ok();
}

Status MapPhi(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  DecoderNames n;
  n.embed = "model.embed_tokens.weight";
  n.lm_head = "lm_head";
  n.layers = "model.layers.";
  n.attn_norm = "input_layernorm";
  n.down = c.architecture == "phi3" ? "mlp.down_proj" : "mlp.fc2";
  if (c.architecture == "phi3") {
    n.final_norm = "model.norm";
    n.mlp_norm = "post_attention_layernorm";
    n.qkv = "self_attn.qkv_proj";
    n.o = "self_attn.o_proj";
    n.gate_up = "mlp.gate_up_proj";
  } else {
    n.final_norm = "model.final_layernorm";
    n.q = "self_attn.q_proj";
    n.k = "self_attn.k_proj";
    n.v = "self_attn.v_proj";
    n.o = "self_attn.dense";
    n.up = "mlp.fc1";
  }
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kPhi({"phi", {"phi", "phi3", "PhiForCausalLM", "Phi3ForCausalLM"}, ConfigurePhi, MapPhi});

}  // namespace
}  // namespace kiln
