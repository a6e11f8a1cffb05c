// Host sampling chain: penalties -> temperature -> top-k -> top-p -> min-p -> draw.
// Seeded and reproducible across runs and processes. temperature 0 = greedy (argmax,
// lowest id wins ties). The CUDA backend implements the same chain on the GPU.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kiln/sampling_params.h"
#include "kiln/status.h"

namespace kiln {



// Random stream for one request: counter-based (Philox-style) so that draw n of a request
// depends only on (seed, n), identically on CPU and GPU.
float UniformDraw(uint64_t seed, uint64_t counter);  // in [0, 1)

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: [vocab], modified in place: on return they hold the penalised logits with NaN
  // replaced by -inf (before temperature). prompt / generated: token history for penalties;
  // ids outside [0, vocab) are ignored. An empty vocab or all -inf/NaN logits give token 0.
  // step: index of this draw in the request (feeds UniformDraw).
  int32_t Sample(std::span<float> logits, std::span<const int32_t> prompt,
                 std::span<const int32_t> generated, uint64_t step) const;
  // The chain without the draw: the renormalised probability of every token (0 outside
  // the kept set). Used by tests and by logprobs.
  std::vector<float> Probabilities(std::span<float> logits, std::span<const int32_t> prompt,
                                   std::span<const int32_t> generated) const;
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
};

// True when a row is plain greedy (temperature 0, no penalties, no logprobs): its token is the
// argmax of the raw logits, which the runtime takes on the device (Backend::ArgmaxRows).
bool IsPlainGreedy(const SamplingParams& p, bool wants_logprobs);

// log-softmax of raw logits, for logprobs reporting.
void LogSoftmax(std::span<const float> logits, std::span<float> out);

}  // namespace kiln
