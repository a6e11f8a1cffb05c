// BLOOM: ALiBi positions, LayerNorm of the embeddings, fused per-head interleaved
// query_key_value, 4h GELU (tanh) MLP, biases everywhere, tied head.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureBloom(const json& hf, ModelConfig* c) {
  c->architecture = "bloom";
  c->norm = "layer";
  c->position = "alibi";
  c->mlp = "plain";
  c->activation = "gelu_tanh";  // bloom_gelu_forward is the tanh approximation
  c->qkv_bias = c->o_bias = c->mlp_bias = true;
  if (c->intermediate_size <= 0) c->intermediate_size = 4 * c->hidden_size;
  c->tie_embeddings = !hf.contains("tie_word_embeddings") || hf["tie_word_embeddings"].is_null() ||
                      hf["tie_word_embeddings"].get<bool>();
  if (hf.value("apply_residual_connection_post_layernorm", false))
    return Unsupported(
        "config.json: BLOOM with apply_residual_connection_post_layernorm=true is not supported");
  // ALiBi needs no position limit; give the runtime a generous default.
  if (!hf.contains("max_position_embeddings") && !hf.contains("seq_length"))
    c->max_position_embeddings = 2048;
  return Status::Ok();
}

Status MapBloom(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  const std::string p = ck.Find("transformer.word_embeddings.weight") || !ck.Find("word_embeddings.weight")
                            ? "transformer."
                            : "";
  DecoderNames n;
  n.embed = p + "word_embeddings.weight";
  n.embed_norm = p + "word_embeddings_layernorm";
  n.final_norm = p + "ln_f";
  n.lm_head = "lm_head";
  n.layers = p + "h.";
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  n.qkv = "self_attention.query_key_value";
  n.qkv_rows = PerHeadQkvRows;
  n.o = "self_attention.dense";
  n.up = "mlp.dense_h_to_4h";
  n.down = "mlp.dense_4h_to_h";
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kBloom({"bloom", {"bloom", "BloomForCausalLM"}, ConfigureBloom, MapBloom});

}  // namespace
}  // namespace kiln
