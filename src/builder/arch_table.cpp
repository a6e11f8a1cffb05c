#include "builder/arch_table.h"

#include <cmath>

namespace kiln {

using json = nlohmann::json;

static std::vector<ArchEntry>& MutableTable() {
  static std::vector<ArchEntry> table;
  return table;
}

ArchRegistrar::ArchRegistrar(ArchEntry entry) { MutableTable().push_back(std::move(entry)); }
const std::vector<ArchEntry>& ArchTable() { return MutableTable(); }

Expected<const ArchEntry*> FindArch(const json& hf) {
  std::string model_type = hf.value("model_type", "");
  if (model_type.empty() && hf.contains("architectures") && hf["architectures"].is_array() &&
      !hf["architectures"].empty() && hf["architectures"][0].is_string())
    model_type = hf["architectures"][0].get<std::string>();
  std::string known;
  for (const auto& e : ArchTable()) {
    for (const auto& t : e.model_types) {
      if (t == model_type) return &e;
      known += (known.empty() ? "" : ", ") + t;
    }
  }
  return Unsupported("unknown architecture: model_type '" + model_type + "' (supported: " + known + ")");
}

namespace {

template <typename T>
Status Field(const json& j, const char* key, T* out, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) return InvalidArgument("config.json: missing field '" + std::string(key) + "'");
    return Status::Ok();
  }
  try {
    *out = j[key].get<T>();
  } catch (const std::exception&) {
    return InvalidArgument("config.json: field '" + std::string(key) + "' has the wrong type: " + j[key].dump());
  }
  return Status::Ok();
}

Status ReadRope(const json& hf, ModelConfig* c) {
  // transformers 5: "rope_parameters" {rope_theta, rope_type, ...}; before: "rope_theta" + "rope_scaling".
  json params = json::object();
  if (hf.contains("rope_parameters") && hf["rope_parameters"].is_object()) {
    params = hf["rope_parameters"];
  } else {
    if (hf.contains("rope_scaling") && hf["rope_scaling"].is_object()) params = hf["rope_scaling"];
    if (hf.contains("rope_theta")) params["rope_theta"] = hf["rope_theta"];
  }
  KILN_RETURN_IF_ERROR(Field(params, "rope_theta", &c->rope_theta, false));
  std::string type = "default";
  if (params.contains("rope_type") && params["rope_type"].is_string()) type = params["rope_type"];
  else if (params.contains("type") && params["type"].is_string()) type = params["type"];
  c->rope_scaling.type = type;
  KILN_RETURN_IF_ERROR(Field(params, "factor", &c->rope_scaling.factor, false));
  KILN_RETURN_IF_ERROR(Field(params, "low_freq_factor", &c->rope_scaling.low_freq_factor, false));
  KILN_RETURN_IF_ERROR(Field(params, "high_freq_factor", &c->rope_scaling.high_freq_factor, false));
  KILN_RETURN_IF_ERROR(
      Field(params, "original_max_position_embeddings", &c->rope_scaling.original_max_position_embeddings, false));
  KILN_RETURN_IF_ERROR(Field(params, "beta_fast", &c->rope_scaling.beta_fast, false));
  KILN_RETURN_IF_ERROR(Field(params, "beta_slow", &c->rope_scaling.beta_slow, false));
  KILN_RETURN_IF_ERROR(Field(params, "attention_factor", &c->rope_scaling.attention_factor, false));
  if (type == "llama3" && c->rope_scaling.original_max_position_embeddings <= 0)
    return InvalidArgument("config.json: llama3 rope scaling needs 'original_max_position_embeddings'");
  double partial = 1.0;
  if (params.contains("partial_rotary_factor")) KILN_RETURN_IF_ERROR(Field(params, "partial_rotary_factor", &partial, false));
  KILN_RETURN_IF_ERROR(Field(hf, "partial_rotary_factor", &partial, false));
  if (partial <= 0 || partial > 1) return InvalidArgument("config.json: partial_rotary_factor must be in (0, 1]");
  if (partial < 1.0) c->rotary_dim = static_cast<int64_t>(c->head_dim * partial);
  return Status::Ok();
}

// HF config classes' attribute_map aliases: GPT-2, BLOOM, Falcon, Phi, Gemma-2 and ChatGLM spell the
// common fields differently. A canonical key that is present wins.
json WithAliases(const json& hf) {
  static const std::pair<const char*, const char*> kAliases[] = {
      {"hidden_size", "n_embd"},
      {"num_hidden_layers", "n_layer"},
      {"num_hidden_layers", "num_layers"},
      {"num_attention_heads", "n_head"},
      {"max_position_embeddings", "n_positions"},
      {"max_position_embeddings", "seq_length"},
      {"intermediate_size", "n_inner"},
      {"intermediate_size", "ffn_hidden_size"},
      {"vocab_size", "padded_vocab_size"},
      {"rms_norm_eps", "layer_norm_eps"},
      {"rms_norm_eps", "layer_norm_epsilon"},
      {"rms_norm_eps", "layernorm_epsilon"},
      {"hidden_act", "hidden_activation"},
      {"hidden_act", "activation_function"},
      {"hidden_act", "activation"},
  };
  json out = hf;
  for (const auto& [canonical, alias] : kAliases)
    if ((!out.contains(canonical) || out[canonical].is_null()) && out.contains(alias) && !out[alias].is_null())
      out[canonical] = out[alias];
  return out;
}

}  // namespace

Status ReadCommonHfConfig(const json& hf_in, ModelConfig* c) {
  const json hf = WithAliases(hf_in);
  KILN_RETURN_IF_ERROR(Field(hf, "hidden_size", &c->hidden_size, true));
  KILN_RETURN_IF_ERROR(Field(hf, "num_hidden_layers", &c->n_layers, true));
  KILN_RETURN_IF_ERROR(Field(hf, "num_attention_heads", &c->n_heads, true));
  c->n_kv_heads = c->n_heads;
  KILN_RETURN_IF_ERROR(Field(hf, "num_key_value_heads", &c->n_kv_heads, false));
  if (c->n_heads <= 0) return InvalidArgument("config.json: num_attention_heads must be positive");
  c->head_dim = c->hidden_size / c->n_heads;
  KILN_RETURN_IF_ERROR(Field(hf, "head_dim", &c->head_dim, false));
  KILN_RETURN_IF_ERROR(Field(hf, "intermediate_size", &c->intermediate_size, false));
  KILN_RETURN_IF_ERROR(Field(hf, "vocab_size", &c->vocab_size, true));
  c->max_position_embeddings = 2048;
  KILN_RETURN_IF_ERROR(Field(hf, "max_position_embeddings", &c->max_position_embeddings, false));
  KILN_RETURN_IF_ERROR(Field(hf, "rms_norm_eps", &c->norm_eps, false));
  KILN_RETURN_IF_ERROR(ReadRope(hf, c));
  c->tie_embeddings = false;
  KILN_RETURN_IF_ERROR(Field(hf, "tie_word_embeddings", &c->tie_embeddings, false));
  std::string act = "silu";
  KILN_RETURN_IF_ERROR(Field(hf, "hidden_act", &act, false));
  if (act == "silu" || act == "swish") c->activation = "silu";
  else if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") c->activation = "gelu_tanh";
  else if (act == "gelu") c->activation = "gelu";
  else if (act == "relu") c->activation = "relu";
  else return Unsupported("config.json: unsupported hidden_act '" + act + "'");
  if (hf.contains("bos_token_id") && hf["bos_token_id"].is_number_integer()) c->bos_id = hf["bos_token_id"];
  c->eos_ids.clear();
  if (hf.contains("eos_token_id")) {
    const json& e = hf["eos_token_id"];
    if (e.is_number_integer()) c->eos_ids.push_back(e.get<int32_t>());
    if (e.is_array())
      for (const auto& v : e)
        if (v.is_number_integer()) c->eos_ids.push_back(v.get<int32_t>());
  }
  return Status::Ok();
}

Expected<const SourceTensor*> RequireTensor(const Checkpoint& ck, const std::string& name,
                                            const std::vector<int64_t>& shape) {
  const SourceTensor* t = ck.Find(name);
  if (!t) return NotFound("checkpoint '" + ck.source_path + "' has no tensor '" + name + "'");
  if (t->shape != shape) {
    std::string got = "[", want = "[";
    for (size_t i = 0; i < t->shape.size(); ++i) got += (i ? ", " : "") + std::to_string(t->shape[i]);
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    return InvalidArgument("checkpoint '" + ck.source_path + "': tensor '" + name + "' has shape " + got +
                           "], the config implies " + want + "]");
  }
  return t;
}

Status SourceToF32(const SourceTensor& t, float* out) {
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16 && t.dtype != DType::kF64)
    return Unsupported("tensor '" + t.name + "' has dtype " + std::string(DTypeName(t.dtype)) +
                       " (expected f32, f16 or bf16)");
  return ConvertElements(t.data, t.dtype, out, DType::kF32, t.numel());
}

PlannedTensor ConcatRows(const std::string& name, std::vector<const SourceTensor*> parts, bool matrix) {
  PlannedTensor p;
  p.name = name;
  p.matrix = matrix;
  int64_t rows = 0;
  for (auto* s : parts) rows += s->shape[0];
  p.shape = parts[0]->shape;
  p.shape[0] = rows;
  p.produce = [parts](float* out) -> Status {
    for (auto* s : parts) {
      KILN_RETURN_IF_ERROR(SourceToF32(*s, out));
      out += s->numel();
    }
    return Status::Ok();
  };
  return p;
}

PlannedTensor Transposed(const std::string& name, const SourceTensor* src) {
  PlannedTensor p;
  p.name = name;
  p.matrix = true;
  const int64_t r = src->shape[0], c = src->shape[1];
  p.shape = {c, r};
  p.produce = [src, r, c](float* out) -> Status {
    std::vector<float> tmp(r * c);
    KILN_RETURN_IF_ERROR(SourceToF32(*src, tmp.data()));
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) out[j * r + i] = tmp[i * c + j];
    return Status::Ok();
  };
  return p;
}

}  // namespace kiln
