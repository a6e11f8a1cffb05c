// GPT-NeoX (Pythia, GPT-J-style NeoX): LayerNorm, partial rotary (rotary_pct, 25% in Pythia),
// fused per-head interleaved query_key_value, parallel residual with two norms, biases.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureNeox(const json& hf, ModelConfig* c) {
  c->architecture = "gpt_neox";
  c->norm = "layer";
  c->mlp = "plain";
  c->qkv_bias = c->o_bias = hf.value("attention_bias", true);
  c->mlp_bias = true;
  // Older configs: rotary_pct and rotary_emb_base instead of rope_parameters.
  double pct = 0;
  KILN_RETURN_IF_ERROR(OptionalNumber(hf, "rotary_pct", &pct));
  if (pct > 0 && pct <= 1) c->rotary_dim = static_cast<int64_t>(c->head_dim * pct);
  if (!hf.contains("rope_parameters"))
    KILN_RETURN_IF_ERROR(OptionalNumber(hf, "rotary_emb_base", &c->rope_theta));
  c->parallel_residual = hf.value("use_parallel_residual", true);
  return Status::Ok();
}

Status MapNeox(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  DecoderNames n;
  n.embed = "gpt_neox.embed_in.weight";
  n.final_norm = "gpt_neox.final_layer_norm";
  n.lm_head = "embed_out";
  n.layers = "gpt_neox.layers.";
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  n.qkv = "attention.query_key_value";
  n.qkv_rows = PerHeadQkvRows;
  n.o = "attention.dense";
  n.up = "mlp.dense_h_to_4h";
  n.down = "mlp.dense_4h_to_h";
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kNeox({"gpt_neox", {"gpt_neox", "GPTNeoXForCausalLM"}, ConfigureNeox, MapNeox});

}  // namespace
}  // namespace kiln
