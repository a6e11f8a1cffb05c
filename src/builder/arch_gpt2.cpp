// GPT-2: learned absolute positions, LayerNorm, gelu_new, biases everywhere, tied head, and
// Conv1D weights stored [in, out] (transposed at build).
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureGpt2(const json& hf, ModelConfig* c) {
  c->architecture = "gpt2";
  c->norm = "layer";
  c->position = "learned";
  c->mlp = "plain";
  c->qkv_bias = c->o_bias = c->mlp_bias = true;
  if (c->intermediate_size <= 0) c->intermediate_size = 4 * c->hidden_size;  // n_inner: null
  c->tie_embeddings = !hf.contains("tie_word_embeddings") || hf["tie_word_embeddings"].is_null() ||
                      hf["tie_word_embeddings"].get<bool>();
  if (hf.value("scale_attn_by_inverse_layer_idx", false))
    return Unsupported("config.json: GPT-2 with scale_attn_by_inverse_layer_idx=true is not supported");
  if (!hf.value("scale_attn_weights", true)) c->attn_scale = 1.0;
  return Status::Ok();
}

Status MapGpt2(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  // Checkpoints saved from GPT2Model (not the LM head model) lack the "transformer." prefix.
  const std::string p = ck.Find("transformer.wte.weight") || !ck.Find("wte.weight") ? "transformer." : "";
  DecoderNames n;
  n.embed = p + "wte.weight";
  n.pos_embed = p + "wpe.weight";
  n.final_norm = p + "ln_f";
  n.lm_head = "lm_head";
  n.layers = p + "h.";
  n.attn_norm = "ln_1";
  n.mlp_norm = "ln_2";
  n.qkv = "attn.c_attn";  // Conv1D [d, 3d]: columns are [q | k | v]
  n.o = "attn.c_proj";
  n.up = "mlp.c_fc";
  n.down = "mlp.c_proj";
  n.conv1d = true;
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kGpt2({"gpt2", {"gpt2", "GPT2LMHeadModel"}, ConfigureGpt2, MapGpt2});

}  // namespace
}  // namespace kiln
