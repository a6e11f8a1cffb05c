// checkpoint -> engine directory: map names, fuse, convert dtype, copy the tokenizer.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kiln/status.h"

namespace kiln {

struct BuildOptions {
  std::string checkpoint;        // HF directory, llama2.c .bin or GGUF file
  std::string hf_config;         // with dummy_weights: an HF config.json giving the shape
  bool dummy_weights = false;    // weights generated (seeded) at load, not stored
  uint64_t dummy_seed = 1234;
  std::string out;               // engine directory (created)
  std::string dtype = "auto";    // auto (the checkpoint's float type) | f32 | f16 | bf16
  std::string tokenizer;         // tokenizer file or folder; default: found with the checkpoint
  std::vector<std::string> lora;  // PEFT adapter directories merged into the weights
};

// progress(stage, done, total): stage is "tensors"; called as work proceeds.
using BuildProgress = std::function<void(const std::string& stage, size_t done, size_t total)>;

Status BuildEngine(const BuildOptions& options, const BuildProgress& progress = {});

}  // namespace kiln
