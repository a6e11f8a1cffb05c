// Falcon: LayerNorm, rotary, parallel attention + MLP. The new decoder architecture
// (40B/180B) has several KV heads with qkv fused per KV group and two norms (ln_attn,
// ln_mlp); Falcon-7B is multi-query with one shared norm; Falcon-RW fuses qkv per head.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

// Falcon-40B's original remote-code config ("RefinedWeb") implies the new decoder architecture.
bool NewArch(const json& hf) {
  return hf.value("new_decoder_architecture", false) || ModelTypeOf(hf) == "RefinedWeb";
}

Status ConfigureFalcon(const json& hf, ModelConfig* c) {
  c->architecture = "falcon";
  c->norm = "layer";
  c->mlp = "plain";
  if (c->intermediate_size <= 0) c->intermediate_size = 4 * c->hidden_size;
  c->qkv_bias = c->o_bias = c->mlp_bias = hf.value("bias", false);
  c->tie_embeddings = !hf.contains("tie_word_embeddings") || hf["tie_word_embeddings"].is_null() ||
                      hf["tie_word_embeddings"].get<bool>();
  // Falcon adds ALiBi before the 1/sqrt(d) scaling (unlike BLOOM); not expressed by our attention.
  if (hf.value("alibi", false)) return Unsupported("config.json: Falcon with alibi=true is not supported");
  if (NewArch(hf)) {
    c->n_kv_heads = c->n_heads;
    for (const char* key : {"num_kv_heads", "n_head_kv"})  // RefinedWeb configs say n_head_kv
      if (hf.contains(key) && hf[key].is_number_integer()) c->n_kv_heads = hf[key].get<int64_t>();
  } else {
    c->n_kv_heads = hf.value("multi_query", true) ? 1 : c->n_heads;
  }
  c->parallel_residual = NewArch(hf) || hf.value("parallel_attn", true);
  return Status::Ok();
}

Status MapFalcon(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  const json& hf = ck.config;
  DecoderNames n;
  n.embed = "transformer.word_embeddings.weight";
  n.final_norm = "transformer.ln_f";
  n.lm_head = "lm_head";
  n.layers = "transformer.h.";
  n.qkv = "self_attention.query_key_value";
  n.o = "self_attention.dense";
  n.up = "mlp.dense_h_to_4h";
  n.down = "mlp.dense_4h_to_h";
  const bool two_norms =
      NewArch(hf) && (!hf.contains("num_ln_in_parallel_attn") || hf["num_ln_in_parallel_attn"].is_null() ||
                      hf["num_ln_in_parallel_attn"] == 2);
  if (two_norms) {
    n.attn_norm = "ln_attn";
    n.mlp_norm = "ln_mlp";
  } else {
    n.attn_norm = "input_layernorm";
    if (!c.parallel_residual) n.mlp_norm = "post_attention_layernorm";
  }
  if (NewArch(hf))
    n.qkv_rows = PerGroupQkvRows;  // [hkv, hq/hkv + 2, hd]
  else if (c.n_kv_heads == c.n_heads)
    n.qkv_rows = PerHeadQkvRows;  // [hq, 3, hd]
  // multi-query: already [q heads; k; v]
  return MapDecoder(c, ck, n, plan);
}

const ArchRegistrar kFalcon(
    {"falcon", {"falcon", "RefinedWeb", "RefinedWebModel", "FalconForCausalLM"}, ConfigureFalcon, MapFalcon});

}  // namespace
}  // namespace kiln
