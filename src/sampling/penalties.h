// Logit penalties from the token history, the first links of the sampling chain.
#pragma once
#include <cstdint>
#include <span>

namespace kiln {

// HF repetition penalty over the SET of ids in prompt + generated (an id seen twice is
// penalised once): logit > 0 ? logit / r : logit * r. r == 1 is a no-op.
void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> prompt,
                            std::span<const int32_t> generated, float r);

// OpenAI presence/frequency penalties over the generated ids only:
// logit -= frequency * count + presence * (count > 0), evaluated as
// logit - (frequency * float(count) + presence) in float.
void ApplyPresenceFrequencyPenalty(std::span<float> logits, std::span<const int32_t> generated,
                                   float presence, float frequency);

}  // namespace kiln
