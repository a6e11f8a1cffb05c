// Launchers of the device sampling chain (sampling.cu): the host Sampler's chain (src/sampling)
// on the GPU, one thread block per row, fp32 math, no host sync.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/kernels/kernels.h"
#include "sampling/device_row.h"

namespace kiln::cuda {

struct SampleRowsArgs {
  int32_t* ids = nullptr;                         // [rows] out
  float* logprobs = nullptr;                      // [rows] out, or null
  int32_t* top_ids = nullptr;                     // [rows, kMaxDeviceTopLogprobs] out, or null
  float* top_logprobs = nullptr;                  // [rows, kMaxDeviceTopLogprobs] out, or null
  const void* logits = nullptr;                   // [rows, vocab] in the element type
  const DeviceSamplingRow* params = nullptr;      // [rows]
  const DevicePenaltyEntry* penalties = nullptr;  // [n_penalties] grouped by row
  int n_penalties = 0;
  float* workspace = nullptr;  // [rows * (vocab + kDeviceSamplingRowScratch)]: penalised logits, scratch
  int64_t rows = 0, vocab = 0;
  bool any_logprobs = false;
};

// Enqueues: convert to f32 -> (raw log-softmax stats and top logprobs) -> penalties -> chain
// -> (chosen logprob).
cudaError_t LaunchSampleRows(const SampleRowsArgs& a, ElemType t, cudaStream_t s);

}  // namespace kiln::cuda
