// A checkpoint's names for the parts of the generic decoder, so that most architectures are
// a name table plus a configure function (arch_*.cpp). MapDecoder plans every engine tensor:
// fuses q/k/v and gate/up, reorders fused qkv rows into [q; k; v], transposes Conv1D weights,
// and checks every shape against the config (errors name the tensor).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "builder/arch_table.h"

namespace kiln {

struct DecoderNames {
  std::string embed;       // full tensor name
  std::string pos_embed;   // learned positions, full name ("" = none)
  std::string embed_norm;  // prefix (+ ".weight"/".bias"), "" = none
  std::string final_norm;  // prefix
  std::string lm_head;     // prefix; skipped when tied
  std::string layers;      // layer i's prefix is layers + i + "."
  // Within a layer (prefixes without ".weight"/".bias"; "" = absent).
  std::string attn_norm, mlp_norm, post_attn_norm, post_mlp_norm;
  std::string q, k, v;  // separate projections, or
  std::string qkv;      // one fused projection
  // Fused source row order -> engine [q rows; k rows; v rows]: engine row r = source row qkv_rows[r].
  std::function<std::vector<int64_t>(const ModelConfig&)> qkv_rows;
  std::string q_norm, k_norm;
  std::string o;
  std::string gate, up;  // gated: separate gate and up; plain MLP: up only
  std::string gate_up;   // gated: one fused [gate rows; up rows]
  std::string down;
  // MoE (c.n_experts > 0): router and experts.<e>.{expert_gate, expert_up, expert_down}.
  std::string router, experts, expert_gate, expert_up, expert_down;
  bool conv1d = false;  // GPT-2: matrices stored [in, out]
};

Status MapDecoder(const ModelConfig& c, const Checkpoint& ck, const DecoderNames& n,
                  std::vector<PlannedTensor>* plan);

// Engine tensor whose row r is source row rows[r] (element r for a vector), as f32.
PlannedTensor PermutedRows(const std::string& name, const SourceTensor* src, std::vector<int64_t> rows,
                           bool matrix);
// Engine matrix = source with every row scaled to unit L2 norm (Baichuan-2's NormHead).
PlannedTensor RowNormalized(const std::string& name, const SourceTensor* src);

// Row orders of fused qkv layouts.
// Per head [q_h; k_h; v_h] (GPT-NeoX, BLOOM, Falcon-RW): source viewed as [hq, 3, hd].
std::vector<int64_t> PerHeadQkvRows(const ModelConfig& c);
// Per KV group [q heads of the group; k; v] (Falcon new decoder): [hkv, hq/hkv + 2, hd].
std::vector<int64_t> PerGroupQkvRows(const ModelConfig& c);

// The config's model_type, else its first "architectures" entry (what FindArch matched).
std::string ModelTypeOf(const nlohmann::json& hf);

// Reads a float field that may be absent or null (then *out is unchanged).
Status OptionalNumber(const nlohmann::json& hf, const char* key, double* out);
// Reads "sliding_window": absent or null leaves *out unchanged; else a whole number of tokens
// >= 0, or an error (a window silently dropped would change the model's outputs).
Status OptionalWindow(const nlohmann::json& hf, int64_t* out);

}  // namespace kiln
