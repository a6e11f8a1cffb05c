// Architectures are data: each entry says which HF model types it takes, how their config
// maps onto ModelConfig, and how their tensors map onto kiln's normalized, fused names.
// Adding a model is one entry here (in its own arch_*.cpp) plus, rarely, one new op.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "kiln/status.h"
#include "model/model_config.h"

namespace kiln {

// One tensor of the engine, produced as f32 values on demand (then converted to the engine
// dtype for matrices; vectors stay f32).
struct PlannedTensor {
  std::string name;             // normalized, e.g. "layers.0.attn.qkv.weight"
  std::vector<int64_t> shape;   // [out, in] for matrices
  bool matrix = true;
  std::function<Status(float* out)> produce;  // fills numel() floats
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct ArchEntry {
  std::string name;                      // engine "architecture"
  std::vector<std::string> model_types;  // HF config "model_type" values it accepts
  // Fills the arch-specific facts; common fields are already read by ReadCommonHfConfig.
  std::function<Status(const nlohmann::json& hf, ModelConfig* c)> configure;
  // Plans every engine tensor from the checkpoint.
  std::function<Status(const ModelConfig& c, const Checkpoint& ck, std::vector<PlannedTensor>* plan)> map_tensors;
};

// Registers an entry at static-initialization time (one per arch_*.cpp).
struct ArchRegistrar {
  explicit ArchRegistrar(ArchEntry entry);
};
const std::vector<ArchEntry>& ArchTable();
// Finds the entry for an HF config (by model_type); the error lists what is supported.
Expected<const ArchEntry*> FindArch(const nlohmann::json& hf_config);

// ---- helpers shared by the arch_*.cpp files ----

// Reads the fields every decoder shares (sizes, heads, eps, rope incl. transformers-5
// rope_parameters and legacy rope_theta/rope_scaling, tie_word_embeddings, bos/eos).
Status ReadCommonHfConfig(const nlohmann::json& hf, ModelConfig* c);

// A source tensor that must exist with the given shape; the error names it.
Expected<const SourceTensor*> RequireTensor(const Checkpoint& ck, const std::string& name,
                                            const std::vector<int64_t>& shape);
// Engine tensor = source tensors stacked along rows (dim 0), converted to f32.
PlannedTensor ConcatRows(const std::string& name, std::vector<const SourceTensor*> parts, bool matrix);
// Engine matrix [rows, cols] = transpose of a source [cols, rows] (GPT-2 Conv1D).
PlannedTensor Transposed(const std::string& name, const SourceTensor* src);
// Converts any float source tensor to f32 (rejecting non-float dtypes with the tensor's name).
Status SourceToF32(const SourceTensor& t, float* out);

}  // namespace kiln
