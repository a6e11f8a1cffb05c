// Baichuan / Baichuan-2: Llama math with q/k/v fused in W_pack ([q; k; v]). The 7B models use
// rotary positions (their config has max_position_embeddings); the 13B models use ALiBi
// (config has only model_max_length). Baichuan-2 (vocab 125696) normalizes the rows of its
// head at inference (NormHead); we normalize them at build.
#include "builder/arch_decoder.h"

namespace kiln {
namespace {

using json = nlohmann::json;

constexpr int64_t kBaichuan2Vocab = 125696;

Status ConfigureBaichuan(const json& hf, ModelConfig* c) {
  c->architecture = "baichuan";
  c->norm = "rms";
  c->mlp = "gated";
  if (!hf.contains("max_position_embeddings")) {
    c->position = "alibi";
    c->max_position_embeddings = hf.value("model_max_length", int64_t{4096});
  }
  return Status::Ok();
}

Status MapBaichuan(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  DecoderNames n;
  n.embed = "model.embed_tokens.weight";
  n.final_norm = "model.norm";
  n.lm_head = "lm_head";
  n.layers = "model.layers.";
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  n.qkv = "self_attn.W_pack";
  n.o = "self_attn.o_proj";
  n.gate = "mlp.gate_proj";
  n.up = "mlp.up_proj";
  n.down = "mlp.down_proj";
  KILN_RETURN_IF_ERROR(MapDecoder(c, ck, n, plan));
  if (c.vocab_size == kBaichuan2Vocab && !c.tie_embeddings)
    for (auto& t : *plan)
      if (t.name == "lm_head.weight") t = RowNormalized(t.name, ck.Find("lm_head.weight"));
  return Status::Ok();
}

const ArchRegistrar kBaichuan(
    {"baichuan", {"baichuan", "BaichuanForCausalLM", "BaiChuanForCausalLM"}, ConfigureBaichuan, MapBaichuan});

}  // namespace
}  // namespace kiln
