// OpenGgufCheckpoint: a llama-architecture GGUF presented in HF form (names, [out, in] shapes,
// rotate-half q/k rows, HF config). Only unquantized tensors (F32/F16/BF16) are accepted.
#include <cstring>
#include <optional>
#include <regex>

#include "format/checkpoint.h"
#include "format/gguf.h"
#include "format/llama2c.h"
#include "format/safetensors.h"

namespace kiln {

using json = nlohmann::json;

namespace {

// GGUF block tensor name (without ".weight"/".bias") -> HF name in model.layers.N.
const std::pair<const char*, const char*> kBlockNames[] = {
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_norm", "input_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"ffn_norm", "post_attention_layernorm"},
};

// Reads an integer metadata key; nullopt when absent, an error when present but not a
// non-negative integer that fits in int64.
Expected<std::optional<int64_t>> GetInt(const json& md, const std::string& key, const std::string& where) {
  if (!md.contains(key)) return std::optional<int64_t>();
  const json& v = md[key];
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > (1ull << 62))
      return Corrupt(where + ": metadata " + key + " = " + v.dump() + " is absurd");
    return std::optional<int64_t>(static_cast<int64_t>(v.get<uint64_t>()));
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return std::optional<int64_t>(v.get<int64_t>());
  return Corrupt(where + ": metadata " + key + " = " + v.dump() + " is not a non-negative integer");
}

Expected<int64_t> RequireInt(const json& md, const std::string& key, const std::string& where) {
  KILN_ASSIGN_OR_RETURN(auto v, GetInt(md, key, where));
  if (!v) return NotFound(where + ": metadata key " + key + " is missing");
  if (*v <= 0) return Corrupt(where + ": metadata " + key + " = " + std::to_string(*v) + " must be positive");
  return *v;
}

Expected<std::optional<double>> GetFloat(const json& md, const std::string& key, const std::string& where) {
  if (!md.contains(key)) return std::optional<double>();
  const json& v = md[key];
  if (!v.is_number()) return Corrupt(where + ": metadata " + key + " = " + v.dump() + " is not a number");
  return std::optional<double>(v.get<double>());
}

}  // namespace

Expected<Checkpoint> OpenGgufCheckpoint(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(GgufFile gf, GgufFile::Open(path));
  return GgufToCheckpoint(gf);
}

Expected<Checkpoint> GgufToCheckpoint(const GgufFile& gf) {
  const std::string& path = gf.path();
  const std::string where = "gguf '" + path + "'";
  const json& md = gf.metadata();
  if (!md.contains("general.architecture") || !md["general.architecture"].is_string())
    return NotFound(where + ": metadata key general.architecture is missing");
  const std::string arch = md["general.architecture"].get<std::string>();
  if (arch != "llama")
    return Unsupported(where + ": general.architecture '" + arch + "' (kiln reads llama-family GGUF models)");
  const std::string a = arch + ".";

  KILN_ASSIGN_OR_RETURN(int64_t hidden, RequireInt(md, a + "embedding_length", where));
  KILN_ASSIGN_OR_RETURN(int64_t n_layers, RequireInt(md, a + "block_count", where));
  KILN_ASSIGN_OR_RETURN(int64_t n_heads, RequireInt(md, a + "attention.head_count", where));
  KILN_ASSIGN_OR_RETURN(int64_t ffn, RequireInt(md, a + "feed_forward_length", where));
  KILN_ASSIGN_OR_RETURN(auto n_kv_opt, GetInt(md, a + "attention.head_count_kv", where));
  KILN_ASSIGN_OR_RETURN(auto ctx_opt, GetInt(md, a + "context_length", where));
  KILN_ASSIGN_OR_RETURN(auto key_len_opt, GetInt(md, a + "attention.key_length", where));
  KILN_ASSIGN_OR_RETURN(auto rope_dim_opt, GetInt(md, a + "rope.dimension_count", where));
  KILN_ASSIGN_OR_RETURN(auto theta_opt, GetFloat(md, a + "rope.freq_base", where));
  KILN_ASSIGN_OR_RETURN(auto eps_opt, GetFloat(md, a + "attention.layer_norm_rms_epsilon", where));
  const int64_t n_kv = n_kv_opt.value_or(n_heads);
  if (n_kv <= 0 || n_heads % n_kv != 0)
    return Corrupt(where + ": metadata " + a + "attention.head_count_kv = " + std::to_string(n_kv) +
                   " does not divide head_count " + std::to_string(n_heads));
  if (!key_len_opt && hidden % n_heads != 0)
    return Corrupt(where + ": head_count " + std::to_string(n_heads) + " does not divide embedding_length " +
                   std::to_string(hidden));
  const int64_t head_dim = key_len_opt.value_or(hidden / n_heads);
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > (1 << 20))
    return Corrupt(where + ": head dim " + std::to_string(head_dim) + " must be positive and even");
  if (n_layers > (1 << 20))
    return Corrupt(where + ": block_count " + std::to_string(n_layers) + " is absurd");
  if (rope_dim_opt && *rope_dim_opt != head_dim)
    return Unsupported(where + ": " + a + "rope.dimension_count " + std::to_string(*rope_dim_opt) +
                       " differs from the head dim " + std::to_string(head_dim) + " (partial rotary)");
  if (md.contains(a + "rope.scaling.type") && md[a + "rope.scaling.type"] != "none")
    return Unsupported(where + ": rope scaling '" + md[a + "rope.scaling.type"].dump() +
                       "' is not supported for GGUF");
  if (gf.Find("rope_freqs.weight"))
    return Unsupported(where +
                       ": tensor rope_freqs.weight (llama3-style rope scaling) is not supported for GGUF");

  // Map every tensor; anything unknown is an error rather than silently dropped.
  Checkpoint ck;
  ck.format = "gguf";
  ck.source_path = path;
  if (gf.file()) ck.owners.push_back(gf.file());
  static const std::regex kBlock(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  bool attention_bias = false;
  DType common = DType::kF32;
  for (const auto& t : gf.tensors()) {
    const std::string tw = where + ": tensor '" + t.name + "'";
    std::string hf;
    int kind = 0;  // 1 = q rows, 2 = k rows (to unpermute)
    std::smatch m;
    if (t.name == "token_embd.weight") {
      hf = "model.embed_tokens.weight";
    } else if (t.name == "output_norm.weight") {
      hf = "model.norm.weight";
    } else if (t.name == "output.weight") {
      hf = "lm_head.weight";
    } else if (std::regex_match(t.name, m, kBlock)) {
      const std::string idx = m[1].str();
      if (idx.size() > 7 || std::stoll(idx) >= n_layers)
        return Corrupt(tw + " has block index " + idx + " but block_count is " + std::to_string(n_layers));
      for (const auto& [g, h] : kBlockNames)
        if (m[2].str() == g)
          hf = "model.layers." + std::to_string(std::stoll(idx)) + "." + h + "." + m[3].str();
      if (m[2].str() == "attn_q") kind = 1;
      if (m[2].str() == "attn_k") kind = 2;
      if (m[3].str() == "bias" && (kind || m[2].str() == "attn_v" || m[2].str() == "attn_output"))
        attention_bias = true;
    }
    if (hf.empty()) return Unsupported(tw + " has no HF llama equivalent");
    DType dt;
    switch (static_cast<GgmlType>(t.type)) {
      case GgmlType::kF32:
        dt = DType::kF32;
        break;
      case GgmlType::kF16:
        dt = DType::kF16;
        break;
      case GgmlType::kBF16:
        dt = DType::kBF16;
        break;
      default:
        return Unsupported(tw + " has type " + GgmlTypeName(t.type) +
                           "; kiln reads unquantized GGUF (F32, F16, BF16) only");
    }
    if (dt != DType::kF32) common = dt;
    SourceTensor st;
    st.name = hf;
    st.dtype = dt;
    for (auto it = t.dims.rbegin(); it != t.dims.rend(); ++it) st.shape.push_back(static_cast<int64_t>(*it));
    st.data = t.data;
    st.nbytes = t.nbytes;
    if (kind) {
      const int64_t heads = kind == 1 ? n_heads : n_kv;
      const int64_t rows = st.shape.empty() ? 1 : st.shape[0];
      if (rows <= 0 || st.nbytes == 0) return Corrupt(tw + " is empty (a zero dimension)");
      if (rows != heads * head_dim)
        return Corrupt(tw + " has " + std::to_string(rows) + " rows, expected " + std::to_string(heads) +
                       " heads x " + std::to_string(head_dim));
      const size_t row_bytes = st.nbytes / static_cast<size_t>(rows);
      auto buf = std::make_shared<std::vector<uint8_t>>(st.nbytes);  // [rows, in] like the source
      UnpermuteRotaryRows(t.data, buf->data(), heads, head_dim, row_bytes);
      st.data = buf->data();
      ck.owners.push_back(buf);
    }
    ck.tensors.push_back(std::move(st));
  }

  // Check presence and shapes against the config, naming the GGUF tensor at fault.
  auto find = [&](const std::string& name) -> const SourceTensor* {
    for (const auto& t : ck.tensors)
      if (t.name == name) return &t;
    return nullptr;
  };
  const SourceTensor* embd = find("model.embed_tokens.weight");
  if (!embd) return NotFound(where + ": tensor token_embd.weight is missing");
  if (embd->shape.size() != 2 || embd->shape[1] != hidden)
    return Corrupt(where + ": tensor token_embd.weight has HF shape " + ShapeString(embd->shape) +
                   ", expected [vocab, " + std::to_string(hidden) + "]");
  const int64_t vocab = embd->shape[0];
  const bool tied = find("lm_head.weight") == nullptr;
  struct Want {
    std::string gguf, hf;
    std::vector<int64_t> shape;
  };
  std::vector<Want> want = {{"output_norm.weight", "model.norm.weight", {hidden}}};
  if (!tied) want.push_back({"output.weight", "lm_head.weight", {vocab, hidden}});
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".", p = "model.layers." + std::to_string(l) + ".";
    want.push_back({g + "attn_q.weight", p + "self_attn.q_proj.weight", {n_heads * head_dim, hidden}});
    want.push_back({g + "attn_k.weight", p + "self_attn.k_proj.weight", {n_kv * head_dim, hidden}});
    want.push_back({g + "attn_v.weight", p + "self_attn.v_proj.weight", {n_kv * head_dim, hidden}});
    want.push_back({g + "attn_output.weight", p + "self_attn.o_proj.weight", {hidden, n_heads * head_dim}});
    want.push_back({g + "attn_norm.weight", p + "input_layernorm.weight", {hidden}});
    want.push_back({g + "ffn_gate.weight", p + "mlp.gate_proj.weight", {ffn, hidden}});
    want.push_back({g + "ffn_up.weight", p + "mlp.up_proj.weight", {ffn, hidden}});
    want.push_back({g + "ffn_down.weight", p + "mlp.down_proj.weight", {hidden, ffn}});
    want.push_back({g + "ffn_norm.weight", p + "post_attention_layernorm.weight", {hidden}});
  }
  for (const auto& w : want) {
    const SourceTensor* t = find(w.hf);
    if (!t) return NotFound(where + ": tensor " + w.gguf + " is missing");
    if (t->shape != w.shape)
      return Corrupt(where + ": tensor " + w.gguf + " has HF shape " + ShapeString(t->shape) + ", expected " +
                     ShapeString(w.shape));
  }

  auto id_or = [&](const std::string& key, int64_t def) -> json {
    if (!md.contains(key) || !md[key].is_number_integer()) return def;
    return md[key];
  };
  const double theta = theta_opt.value_or(10000.0);
  ck.config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", hidden},
      {"intermediate_size", ffn},
      {"num_hidden_layers", n_layers},
      {"num_attention_heads", n_heads},
      {"num_key_value_heads", n_kv},
      {"head_dim", head_dim},
      {"vocab_size", vocab},
      {"max_position_embeddings", ctx_opt.value_or(2048)},
      {"rms_norm_eps", eps_opt.value_or(1e-5)},
      {"rope_theta", theta},
      {"rope_parameters", {{"rope_theta", theta}, {"rope_type", "default"}}},
      {"hidden_act", "silu"},
      {"attention_bias", attention_bias},
      {"mlp_bias", false},
      {"tie_word_embeddings", tied},
      {"bos_token_id", id_or("tokenizer.ggml.bos_token_id", 1)},
      {"eos_token_id", id_or("tokenizer.ggml.eos_token_id", 2)},
      {"torch_dtype", common == DType::kF32   ? "float32"
                      : common == DType::kF16 ? "float16"
                                              : "bfloat16"},
  };
  ck.gguf_metadata = md;
  return ck;
}

}  // namespace kiln
