#include "builder/lora.h"

namespace kiln {

Status MergeLoraAdapters(Checkpoint&, const std::vector<std::string>& adapters, nlohmann::json*) {
  return Unsupported("--lora: merging PEFT adapters is not implemented yet (" + adapters.front() + ")");
}

}  // namespace kiln
