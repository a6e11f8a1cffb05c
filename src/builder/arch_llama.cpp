// The Llama family: Llama 1/2/3 (incl. llama3 rope scaling), Mistral (sliding window),
// Qwen2 (qkv bias), Qwen3 (q/k norm); MHA/MQA/GQA; tied or untied embeddings.
#include "builder/arch_decoder.h"
#include "builder/arch_table.h"

namespace kiln {
namespace {

using json = nlohmann::json;

Status ConfigureLlama(const json& hf, ModelConfig* c) {
  const std::string type = hf.value("model_type", "llama");
  c->architecture = type == "mistral" ? "mistral" : type == "qwen2" ? "qwen2" : type == "qwen3" ? "qwen3" : "llama";
  c->norm = "rms";
  c->mlp = "gated";
  c->qkv_bias = type == "qwen2" || hf.value("attention_bias", false);
  c->o_bias = type != "qwen2" && hf.value("attention_bias", false);
  c->mlp_bias = hf.value("mlp_bias", false);
  c->qk_norm = type == "qwen3";
  // Mistral always honours sliding_window; Qwen2/3 only with use_sliding_window.
  const bool sliding = type == "mistral" || hf.value("use_sliding_window", false);
  if (sliding) KILN_RETURN_IF_ERROR(OptionalWindow(hf, &c->sliding_window));
  return Status::Ok();
}

Status MapLlama(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan) {
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  auto req = [&](const std::string& n, std::vector<int64_t> shape) { return RequireTensor(ck, n, std::move(shape)); };
  KILN_ASSIGN_OR_RETURN(auto* embed, req("model.embed_tokens.weight", {c.vocab_size, d}));
  plan->push_back(ConcatRows("embed.weight", {embed}, true));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string s = "model.layers." + std::to_string(i) + ".";
    const std::string e = "layers." + std::to_string(i) + ".";
    KILN_ASSIGN_OR_RETURN(auto* in_norm, req(s + "input_layernorm.weight", {d}));
    KILN_ASSIGN_OR_RETURN(auto* q, req(s + "self_attn.q_proj.weight", {c.q_dim(), d}));
    KILN_ASSIGN_OR_RETURN(auto* k, req(s + "self_attn.k_proj.weight", {c.kv_dim(), d}));
    KILN_ASSIGN_OR_RETURN(auto* v, req(s + "self_attn.v_proj.weight", {c.kv_dim(), d}));
    KILN_ASSIGN_OR_RETURN(auto* o, req(s + "self_attn.o_proj.weight", {d, c.q_dim()}));
    KILN_ASSIGN_OR_RETURN(auto* post_norm, req(s + "post_attention_layernorm.weight", {d}));
    KILN_ASSIGN_OR_RETURN(auto* gate, req(s + "mlp.gate_proj.weight", {f, d}));
    KILN_ASSIGN_OR_RETURN(auto* up, req(s + "mlp.up_proj.weight", {f, d}));
    KILN_ASSIGN_OR_RETURN(auto* down, req(s + "mlp.down_proj.weight", {d, f}));
    plan->push_back(ConcatRows(e + "attn_norm.weight", {in_norm}, false));
    plan->push_back(ConcatRows(e + "attn.qkv.weight", {q, k, v}, true));
    if (c.qkv_bias) {
      KILN_ASSIGN_OR_RETURN(auto* qb, req(s + "self_attn.q_proj.bias", {c.q_dim()}));
      KILN_ASSIGN_OR_RETURN(auto* kb, req(s + "self_attn.k_proj.bias", {c.kv_dim()}));
      KILN_ASSIGN_OR_RETURN(auto* vb, req(s + "self_attn.v_proj.bias", {c.kv_dim()}));
      plan->push_back(ConcatRows(e + "attn.qkv.bias", {qb, kb, vb}, false));
    }
    if (c.qk_norm) {
      KILN_ASSIGN_OR_RETURN(auto* qn, req(s + "self_attn.q_norm.weight", {hd}));
      KILN_ASSIGN_OR_RETURN(auto* kn, req(s + "self_attn.k_norm.weight", {hd}));
      plan->push_back(ConcatRows(e + "attn.q_norm.weight", {qn}, false));
      plan->push_back(ConcatRows(e + "attn.k_norm.weight", {kn}, false));
    }
    plan->push_back(ConcatRows(e + "attn.o.weight", {o}, true));
    if (c.o_bias) {
      KILN_ASSIGN_OR_RETURN(auto* ob, req(s + "self_attn.o_proj.bias", {d}));
      plan->push_back(ConcatRows(e + "attn.o.bias", {ob}, false));
    }
    plan->push_back(ConcatRows(e + "mlp_norm.weight", {post_norm}, false));
    plan->push_back(ConcatRows(e + "mlp.gate_up.weight", {gate, up}, true));
    plan->push_back(ConcatRows(e + "mlp.down.weight", {down}, true));
    if (c.mlp_bias) {
      KILN_ASSIGN_OR_RETURN(auto* gb, req(s + "mlp.gate_proj.bias", {f}));
      KILN_ASSIGN_OR_RETURN(auto* ub, req(s + "mlp.up_proj.bias", {f}));
      KILN_ASSIGN_OR_RETURN(auto* db, req(s + "mlp.down_proj.bias", {d}));
      plan->push_back(ConcatRows(e + "mlp.gate_up.bias", {gb, ub}, false));
      plan->push_back(ConcatRows(e + "mlp.down.bias", {db}, false));
    }
  }
  KILN_ASSIGN_OR_RETURN(auto* norm, req("model.norm.weight", {d}));
  plan->push_back(ConcatRows("final_norm.weight", {norm}, false));
  if (!c.tie_embeddings) {
    KILN_ASSIGN_OR_RETURN(auto* head, req("lm_head.weight", {c.vocab_size, d}));
    plan->push_back(ConcatRows("lm_head.weight", {head}, true));
  }
  return Status::Ok();
}

const ArchRegistrar kLlama({"llama", {"llama", "mistral", "qwen2", "qwen3", "LlamaForCausalLM"}, ConfigureLlama, MapLlama});

}  // namespace
}  // namespace kiln
