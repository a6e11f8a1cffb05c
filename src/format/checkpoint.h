// A source checkpoint, whatever its file format, seen in Hugging Face form: an HF-style
// config.json object and tensors under HF names in HF layouts (e.g. rotate-half q/k rows).
// The llama2.c and GGUF readers synthesize the config and undo their formats' permutations,
// so the builder only ever maps HF layouts.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kiln/status.h"

namespace kiln {

struct SourceTensor {
  std::string name;  // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // kept alive by Checkpoint::owners
  size_t nbytes = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct Checkpoint {
  std::string format;       // "hf" | "llama2c" | "gguf"
  std::string source_path;  // what the user passed
  nlohmann::json config;    // HF config.json content
  std::vector<SourceTensor> tensors;
  // GGUF only: the file's key/value metadata as JSON (arrays become JSON arrays), from which
  // the tokenizer module reads the embedded vocabulary (tokenizer.ggml.*).
  nlohmann::json gguf_metadata;
  std::vector<std::shared_ptr<const void>> owners;  // mmaps and converted buffers

  const SourceTensor* Find(const std::string& name) const;
};

// Dispatches on what `path` is: a directory with config.json (HF), a *.gguf file (by magic),
// or a llama2.c .bin (anything else that parses as one).
Expected<Checkpoint> OpenCheckpoint(const std::string& path);
Expected<Checkpoint> OpenHfCheckpoint(const std::string& dir);
Expected<Checkpoint> OpenLlama2cCheckpoint(const std::string& path);
Expected<Checkpoint> OpenGgufCheckpoint(const std::string& path);

}  // namespace kiln
