// How the next token is chosen. The chain, in order: repetition/presence/frequency penalties
// -> temperature -> top-k -> top-p -> min-p -> seeded draw. temperature 0 = greedy.
#pragma once
#include <cstdint>

#include "kiln/status.h"

namespace kiln {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // HF: logit>0 ? logit/r : logit*r, over prompt+generated ids
  float presence_penalty = 0.0f;    // OpenAI: logit -= presence * (count > 0)  (generated ids)
  float frequency_penalty = 0.0f;   // OpenAI: logit -= frequency * count       (generated ids)
  uint64_t seed = 0;
  Status Validate() const;  // rejects NaN, negative temperature, top_p outside (0,1], ...
};

}  // namespace kiln
