// One sampling step on the backend (Backend::SampleRows) for the executor and the
// single-request Engine: packs every row's parameters and penalty history, uploads them in one
// copy, samples on the device and copies back only the ids (plus logprobs when some row asks).
#pragma once
#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "kiln/sampling_params.h"
#include "sampling/device_row.h"
#include "sampling/sampler.h"  // IsPlainGreedy

namespace kiln {

// False when KILN_HOST_SAMPLING=1: every sampled step copies the logits to the host and runs
// the host Sampler there (A/B and debugging).
bool DeviceSamplingEnabled();

class DeviceSampling {
 public:
  // Device memory for up to max_rows rows of `vocab` logits.
  Status Reserve(Backend& backend, int max_rows, int64_t vocab);

  void Clear();
  // Row r = the r-th call since Clear(). prompt/generated: the token history for penalties.
  void AddRow(const SamplingParams& p, std::span<const int32_t> prompt, std::span<const int32_t> generated,
              uint64_t counter, bool want_logprob, int n_top_logprobs);
  int n_rows() const { return static_cast<int>(rows_.size()); }

  // Samples logits [n_rows, vocab] and brings the results to the host (blocks).
  Status Run(const Tensor& logits) {
    KILN_RETURN_IF_ERROR(Enqueue(logits));
    return Fetch();
  }
  // The two halves of Run: upload + enqueue the chain (no sync); copy the results back.
  Status Enqueue(const Tensor& logits);
  Status Fetch();

  int32_t id(int r) const { return host_out_[r]; }
  float logprob(int r) const { return want_lp_ ? std::bit_cast<float>(host_out_[n_rows() + r]) : 0.0f; }
  // Top logprobs of row r: n_top_logprobs (id, logprob) pairs, best first.
  int32_t top_id(int r, int i) const { return host_out_[2 * n_rows() + r * kMaxDeviceTopLogprobs + i]; }
  float top_logprob(int r, int i) const {
    return std::bit_cast<float>(host_out_[(2 + kMaxDeviceTopLogprobs) * n_rows() + r * kMaxDeviceTopLogprobs + i]);
  }

 private:
  Backend* backend_ = nullptr;
  int max_rows_ = 0;
  int64_t vocab_ = 0;
  DeviceBuffer workspace_;  // f32 [max_rows * (vocab + kDeviceSamplingRowScratch)]
  DeviceBuffer out_;        // i32 [max_rows * (2 + 2 * kMaxDeviceTopLogprobs)]
  DeviceBuffer in_;         // rows then penalty entries (grows)
  std::vector<DeviceSamplingRow> rows_;       // [n_rows]
  std::vector<DevicePenaltyEntry> penalties_;  // [n_penalties] grouped by row
  std::vector<uint8_t> staging_;               // rows_ then penalties_, uploaded in one copy
  std::vector<int32_t> host_out_;              // ids, then logprobs, then top ids/logprobs (bits)
  std::vector<std::pair<int32_t, int32_t>> scratch_;  // (token, from generated) while packing
  bool want_lp_ = false, want_top_ = false;
};

}  // namespace kiln
