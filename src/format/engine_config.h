// The engine directory's config.json (documented in docs/ENGINE_FORMAT.md).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.h"
#include "kiln/status.h"
#include "model/model_config.h"

namespace kiln {

constexpr int kEngineFormatVersion = 1;

struct EngineConfig {
  std::string kiln_version = KILN_VERSION;
  int format_version = kEngineFormatVersion;
  ModelConfig model;
  DType dtype = DType::kF32;  // storage dtype of the weight matrices
  nlohmann::json quantization = {{"algo", "none"}};
  int tp = 1, pp = 1, world_size = 1;
  nlohmann::json kernels = nlohmann::json::object();
  nlohmann::json build = nlohmann::json::object();
  // {"kind": "llama2c"|"sentencepiece"|"hf"|"gguf"|..., "files": [...], "bos_id", "eos_ids", "chat_template"}
  nlohmann::json tokenizer = nlohmann::json::object();
  // Dummy-weight engines: weights are generated at load from this seed, not stored.
  bool dummy_weights = false;
  uint64_t dummy_seed = 0;

  nlohmann::json ToJson() const;
  static Expected<EngineConfig> FromJson(const nlohmann::json& j, const std::string& where);
};

// Reads <dir>/config.json with errors naming the file and field.
Expected<EngineConfig> ReadEngineConfig(const std::string& engine_dir);
Status WriteEngineConfig(const std::string& engine_dir, const EngineConfig& config);
// True when `path` looks like an engine directory (config.json with "kiln_version").
bool IsEngineDir(const std::string& path);

}  // namespace kiln
