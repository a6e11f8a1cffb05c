// BOS/EOS as the runtime uses them: the model's config first, then the tokenizer's.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

inline int32_t ResolveBosId(const ModelConfig& c, const Tokenizer* tok) {
  if (c.bos_id >= 0) return c.bos_id;
  return tok ? tok->bos_id() : -1;
}

// The config's EOS ids plus any further ones the tokenizer names (e.g. Llama-3's <|eot_id|>).
inline std::vector<int32_t> ResolveEosIds(const ModelConfig& c, const Tokenizer* tok) {
  std::vector<int32_t> ids = c.eos_ids;
  if (tok)
    for (int32_t id : tok->eos_ids())
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

}  // namespace kiln
