// Mixtral: Llama/Mistral attention with a sparse MoE MLP: a router picks the top-k experts
// per token (softmax, renormalised over the chosen ones); each expert is a SwiGLU MLP.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureMixtral(const json& hf, ModelConfig* c) {
  c->architecture = "mixtral";
  c->norm = "rms";
  c->mlp = "gated";
  c->n_experts = hf.value("num_local_experts", int64_t{8});
  c->n_experts_per_tok = hf.value("num_experts_per_tok", int64_t{2});
  c->moe_renormalize = true;
  KILN_RETURN_IF_ERROR(OptionalWindow(hf, &c->sliding_window));
  return Status::Ok();
}

Status MapMixtral(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  DecoderNames n;
  n.embed = "model.embed_tokens.weight";
  n.final_norm = "model.norm";
  n.lm_head = "lm_head";
  n.layers = "model.layers.";
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  n.q = "self_attn.q_proj";
  n.k = "self_attn.k_proj";
  n.v = "self_attn.v_proj";
  n.o = "self_attn.o_proj";
  n.router = "block_sparse_moe.gate";
  n.experts = "block_sparse_moe.experts.";
  n.expert_gate = "w1";
  n.expert_up = "w3";
  n.expert_down = "w2";
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kMixtral({"mixtral", {"mixtral", "MixtralForCausalLM"}, ConfigureMixtral, MapMixtral});

}  // namespace
}  // namespace kiln
