#include "sampling/penalties.h"

#include <algorithm>
#include <vector>

namespace kiln {
namespace {

// Appends the ids of `history` that index `logits`; out-of-range ids are ignored, not trusted.
void AppendInRange(std::span<const int32_t> history, size_t vocab, std::vector<int32_t>& out) {
  for (int32_t id : history) {
    if (id >= 0 && static_cast<size_t>(id) < vocab) out.push_back(id);
  }
}

}  // namespace

void ApplyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> prompt,
                            std::span<const int32_t> generated, float r) {
  if (r == 1.0f) return;
  // Sort + unique over the history: O(h log h), independent of the vocab size.
  std::vector<int32_t> ids;
  ids.reserve(prompt.size() + generated.size());
  AppendInRange(prompt, logits.size(), ids);
  AppendInRange(generated, logits.size(), ids);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (int32_t id : ids) {
    float& l = logits[id];
    l = l > 0.0f ? l / r : l * r;
  }
}

void ApplyPresenceFrequencyPenalty(std::span<float> logits, std::span<const int32_t> generated,
                                   float presence, float frequency) {
  if (presence == 0.0f && frequency == 0.0f) return;
  std::vector<int32_t> ids;
  ids.reserve(generated.size());
  AppendInRange(generated, logits.size(), ids);
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    const float count = static_cast<float>(j - i);
    logits[ids[i]] -= frequency * count + presence;
    i = j;
  }
}

}  // namespace kiln
