// Plain-data description of one row of a device sampling step (Backend::SampleRows): the
// sampling parameters, the draw counter and a slice of the packed penalty list. Shared by the
// runtime (which packs it), the default host implementation and the CUDA kernels, so it is
// C++17, header-only and free of runtime types. Layout is fixed (uploaded as bytes).
#pragma once
#include <cstdint>

namespace kiln {

// Most top logprobs a device sampling step returns per row; larger requests sample on the host.
constexpr int kMaxDeviceTopLogprobs = 20;
// f32 words of backend scratch per row besides its logits: the sampling workspace of n rows is
// n * (vocab + kDeviceSamplingRowScratch) f32.
constexpr int64_t kDeviceSamplingRowScratch = 4096;

struct DeviceSamplingRow {
  float temperature = 1.0f;  // !(T > 0): greedy (argmax of the penalised logits)
  float top_p = 1.0f;        // < 1: on
  float min_p = 0.0f;        // > 0: on (clamped to 1)
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t top_k = 0;           // > 0 and < vocab: on
  int32_t n_top_logprobs = 0;  // [0, kMaxDeviceTopLogprobs]: top logprobs of the raw logits
  int32_t want_logprob = 0;    // != 0: logprob of the chosen token (raw log-softmax)
  int32_t penalty_begin = 0;   // this row's entries: penalties[penalty_begin, penalty_end)
  int32_t penalty_end = 0;
  int32_t pad = 0;
  uint64_t seed = 0;
  uint64_t counter = 0;  // index of this draw in the request (rng.h)
};
static_assert(sizeof(DeviceSamplingRow) == 64, "DeviceSamplingRow is uploaded as raw bytes");

// One distinct token of a row's history: `count` occurrences in the generated ids and whether
// it occurs in the prompt. Tokens are distinct within a row and inside [0, vocab).
struct DevicePenaltyEntry {
  int32_t row = 0;
  int32_t token = 0;
  int32_t count = 0;      // occurrences in the generated ids
  int32_t in_prompt = 0;  // != 0: occurs in the prompt
};
static_assert(sizeof(DevicePenaltyEntry) == 16, "DevicePenaltyEntry is uploaded as raw bytes");

}  // namespace kiln
