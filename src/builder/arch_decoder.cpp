#include "builder/arch_decoder.h"

#include <cmath>

namespace kiln {

PlannedTensor PermutedRows(const std::string& name, const SourceTensor* src, std::vector<int64_t> rows,
                           bool matrix) {
  PlannedTensor p;
  p.name = name;
  p.matrix = matrix;
  p.shape = src->shape;
  const int64_t cols = src->shape.size() > 1 ? src->shape[1] : 1;
  p.produce = [src, rows = std::move(rows), cols](float* out) -> Status {
    std::vector<float> tmp(src->numel());
    KILN_RETURN_IF_ERROR(SourceToF32(*src, tmp.data()));
    for (size_t r = 0; r < rows.size(); ++r)
      std::copy(tmp.begin() + rows[r] * cols, tmp.begin() + (rows[r] + 1) * cols, out + r * cols);
    return Status::Ok();
  };
  return p;
}

PlannedTensor RowNormalized(const std::string& name, const SourceTensor* src) {
  PlannedTensor p = ConcatRows(name, {src}, true);
  const int64_t rows = src->shape[0], cols = src->shape[1];
  p.produce = [src, rows, cols](float* out) -> Status {
    KILN_RETURN_IF_ERROR(SourceToF32(*src, out));
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t j = 0; j < cols; ++j) ss += static_cast<double>(out[r * cols + j]) * out[r * cols + j];
      // torch.nn.functional.normalize: x / max(||x||, 1e-12)
      const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
      for (int64_t j = 0; j < cols; ++j) out[r * cols + j] = static_cast<float>(out[r * cols + j] * inv);
    }
    return Status::Ok();
  };
  return p;
}

std::vector<int64_t> PerHeadQkvRows(const ModelConfig& c) {
  const int64_t h = c.n_heads, hd = c.head_dim;
  std::vector<int64_t> rows;
  for (int part = 0; part < 3; ++part)
    for (int64_t head = 0; head < h; ++head)
      for (int64_t j = 0; j < hd; ++j) rows.push_back((head * 3 + part) * hd + j);
  return rows;
}

std::vector<int64_t> PerGroupQkvRows(const ModelConfig& c) {
  const int64_t hq = c.n_heads, hkv = c.n_kv_heads, hd = c.head_dim, per = hq / hkv + 2;
  std::vector<int64_t> rows;
  for (int64_t head = 0; head < hq; ++head)  // q head h is slot h % (hq/hkv) of group h / (hq/hkv)
    for (int64_t j = 0; j < hd; ++j) rows.push_back(((head / (per - 2)) * per + head % (per - 2)) * hd + j);
  for (int part = 0; part < 2; ++part)
    for (int64_t g = 0; g < hkv; ++g)
      for (int64_t j = 0; j < hd; ++j) rows.push_back((g * per + per - 2 + part) * hd + j);
  return rows;
}

std::string ModelTypeOf(const nlohmann::json& hf) {
  if (hf.contains("model_type") && hf["model_type"].is_string()) return hf["model_type"];
  if (hf.contains("architectures") && hf["architectures"].is_array() && !hf["architectures"].empty() &&
      hf["architectures"][0].is_string())
    return hf["architectures"][0];
  return "";
}

Status OptionalNumber(const nlohmann::json& hf, const char* key, double* out) {
  if (!hf.contains(key) || hf[key].is_null()) return Status::Ok();
  if (!hf[key].is_number())
    return InvalidArgument("config.json: field '" + std::string(key) + "' must be a number");
  *out = hf[key].get<double>();
  return Status::Ok();
}

Status OptionalWindow(const nlohmann::json& hf, int64_t* out) {
  if (!hf.contains("sliding_window") || hf["sliding_window"].is_null()) return Status::Ok();
  const nlohmann::json& v = hf["sliding_window"];
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    return InvalidArgument("config.json: field 'sliding_window' must be a whole number of tokens or null, got " +
                           v.dump());
  *out = v.get<int64_t>();
  return Status::Ok();
}

Status MapDecoder(const ModelConfig& c, const Checkpoint& ck, const DecoderNames& n,
                  std::vector<PlannedTensor>* plan) {
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  auto req = [&](const std::string& name, std::vector<int64_t> shape) {
    return RequireTensor(ck, name, std::move(shape));
  };
  // Engine matrix [out, in]; Conv1D sources are stored [in, out].
  auto matrix = [&](const std::string& src, const std::string& dst, int64_t out, int64_t in,
                    bool conv1d) -> Status {
    KILN_ASSIGN_OR_RETURN(auto* t,
                          req(src, conv1d ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in}));
    plan->push_back(conv1d ? Transposed(dst, t) : ConcatRows(dst, {t}, true));
    return Status::Ok();
  };
  auto vector = [&](const std::string& src, const std::string& dst, int64_t len) -> Status {
    KILN_ASSIGN_OR_RETURN(auto* t, req(src, {len}));
    plan->push_back(ConcatRows(dst, {t}, false));
    return Status::Ok();
  };
  // A norm's weight, and its bias when LayerNorm has one.
  auto norm = [&](const std::string& src, const std::string& dst) -> Status {
    KILN_RETURN_IF_ERROR(vector(src + ".weight", dst + ".weight", d));
    if (c.norm == "layer" && ck.Find(src + ".bias"))
      KILN_RETURN_IF_ERROR(vector(src + ".bias", dst + ".bias", d));
    return Status::Ok();
  };

  KILN_RETURN_IF_ERROR(matrix(n.embed, "embed.weight", c.vocab_size, d, false));
  if (!n.pos_embed.empty())
    KILN_RETURN_IF_ERROR(matrix(n.pos_embed, "pos_embed.weight", c.max_position_embeddings, d, false));
  if (!n.embed_norm.empty()) KILN_RETURN_IF_ERROR(norm(n.embed_norm, "embed_norm"));

  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string s = n.layers + std::to_string(i) + ".";
    const std::string e = "layers." + std::to_string(i) + ".";
    KILN_RETURN_IF_ERROR(norm(s + n.attn_norm, e + "attn_norm"));
    if (n.qkv.empty()) {
      KILN_ASSIGN_OR_RETURN(auto* q, req(s + n.q + ".weight", {c.q_dim(), d}));
      KILN_ASSIGN_OR_RETURN(auto* k, req(s + n.k + ".weight", {c.kv_dim(), d}));
      KILN_ASSIGN_OR_RETURN(auto* v, req(s + n.v + ".weight", {c.kv_dim(), d}));
      plan->push_back(ConcatRows(e + "attn.qkv.weight", {q, k, v}, true));
      if (c.qkv_bias) {
        KILN_ASSIGN_OR_RETURN(auto* qb, req(s + n.q + ".bias", {c.q_dim()}));
        KILN_ASSIGN_OR_RETURN(auto* kb, req(s + n.k + ".bias", {c.kv_dim()}));
        KILN_ASSIGN_OR_RETURN(auto* vb, req(s + n.v + ".bias", {c.kv_dim()}));
        plan->push_back(ConcatRows(e + "attn.qkv.bias", {qb, kb, vb}, false));
      }
    } else if (n.conv1d) {
      KILN_RETURN_IF_ERROR(matrix(s + n.qkv + ".weight", e + "attn.qkv.weight", c.qkv_dim(), d, true));
      if (c.qkv_bias) KILN_RETURN_IF_ERROR(vector(s + n.qkv + ".bias", e + "attn.qkv.bias", c.qkv_dim()));
    } else {
      KILN_ASSIGN_OR_RETURN(auto* w, req(s + n.qkv + ".weight", {c.qkv_dim(), d}));
      const SourceTensor* b = nullptr;
      if (c.qkv_bias) {
        KILN_ASSIGN_OR_RETURN(b, req(s + n.qkv + ".bias", {c.qkv_dim()}));
      }
      if (n.qkv_rows) {
        const auto rows = n.qkv_rows(c);
        plan->push_back(PermutedRows(e + "attn.qkv.weight", w, rows, true));
        if (b) plan->push_back(PermutedRows(e + "attn.qkv.bias", b, rows, false));
      } else {
        plan->push_back(ConcatRows(e + "attn.qkv.weight", {w}, true));
        if (b) plan->push_back(ConcatRows(e + "attn.qkv.bias", {b}, false));
      }
    }
    if (c.qk_norm) {
      KILN_RETURN_IF_ERROR(vector(s + n.q_norm + ".weight", e + "attn.q_norm.weight", hd));
      KILN_RETURN_IF_ERROR(vector(s + n.k_norm + ".weight", e + "attn.k_norm.weight", hd));
    }
    KILN_RETURN_IF_ERROR(matrix(s + n.o + ".weight", e + "attn.o.weight", d, c.q_dim(), n.conv1d));
    if (c.o_bias) KILN_RETURN_IF_ERROR(vector(s + n.o + ".bias", e + "attn.o.bias", d));
    if (!n.post_attn_norm.empty())
      KILN_RETURN_IF_ERROR(vector(s + n.post_attn_norm + ".weight", e + "post_attn_norm.weight", d));
    if (!n.mlp_norm.empty()) KILN_RETURN_IF_ERROR(norm(s + n.mlp_norm, e + "mlp_norm"));

    if (c.n_experts > 0) {
      KILN_RETURN_IF_ERROR(matrix(s + n.router + ".weight", e + "mlp.router.weight", c.n_experts, d, false));
      for (int64_t x = 0; x < c.n_experts; ++x) {
        const std::string sx = s + n.experts + std::to_string(x) + ".";
        const std::string ex = e + "mlp.experts." + std::to_string(x) + ".";
        KILN_ASSIGN_OR_RETURN(auto* g, req(sx + n.expert_gate + ".weight", {f, d}));
        KILN_ASSIGN_OR_RETURN(auto* u, req(sx + n.expert_up + ".weight", {f, d}));
        plan->push_back(ConcatRows(ex + "gate_up.weight", {g, u}, true));
        KILN_RETURN_IF_ERROR(matrix(sx + n.expert_down + ".weight", ex + "down.weight", d, f, false));
      }
    } else if (c.mlp == "gated") {
      if (!n.gate_up.empty()) {
        KILN_RETURN_IF_ERROR(matrix(s + n.gate_up + ".weight", e + "mlp.gate_up.weight", 2 * f, d, n.conv1d));
        if (c.mlp_bias) KILN_RETURN_IF_ERROR(vector(s + n.gate_up + ".bias", e + "mlp.gate_up.bias", 2 * f));
      } else {
        KILN_ASSIGN_OR_RETURN(auto* g, req(s + n.gate + ".weight", {f, d}));
        KILN_ASSIGN_OR_RETURN(auto* u, req(s + n.up + ".weight", {f, d}));
        plan->push_back(ConcatRows(e + "mlp.gate_up.weight", {g, u}, true));
        if (c.mlp_bias) {
          KILN_ASSIGN_OR_RETURN(auto* gb, req(s + n.gate + ".bias", {f}));
          KILN_ASSIGN_OR_RETURN(auto* ub, req(s + n.up + ".bias", {f}));
          plan->push_back(ConcatRows(e + "mlp.gate_up.bias", {gb, ub}, false));
        }
      }
    } else {
      KILN_RETURN_IF_ERROR(matrix(s + n.up + ".weight", e + "mlp.up.weight", f, d, n.conv1d));
      if (c.mlp_bias) KILN_RETURN_IF_ERROR(vector(s + n.up + ".bias", e + "mlp.up.bias", f));
    }
    if (c.n_experts == 0) {
      KILN_RETURN_IF_ERROR(matrix(s + n.down + ".weight", e + "mlp.down.weight", d, f, n.conv1d));
      if (c.mlp_bias) KILN_RETURN_IF_ERROR(vector(s + n.down + ".bias", e + "mlp.down.bias", d));
    }
    if (!n.post_mlp_norm.empty())
      KILN_RETURN_IF_ERROR(vector(s + n.post_mlp_norm + ".weight", e + "post_mlp_norm.weight", d));
  }
  KILN_RETURN_IF_ERROR(norm(n.final_norm, "final_norm"));
  if (!c.tie_embeddings) {
    KILN_RETURN_IF_ERROR(matrix(n.lm_head + ".weight", "lm_head.weight", c.vocab_size, d, false));
    if (ck.Find(n.lm_head + ".bias"))
      KILN_RETURN_IF_ERROR(vector(n.lm_head + ".bias", "lm_head.bias", c.vocab_size));
  }
  return Status::Ok();
}

}  // namespace kiln
