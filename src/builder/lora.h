// PEFT LoRA adapters merged into the source weights before mapping: W' = W + scale * B @ A.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "kiln/status.h"

namespace kiln {

// Replaces the affected tensors of `ck` with merged copies (kept alive in ck.owners) and
// appends one record per adapter (path, r, alpha, targets) to `record`.
Status MergeLoraAdapters(Checkpoint& ck, const std::vector<std::string>& adapters, nlohmann::json* record);

}  // namespace kiln
