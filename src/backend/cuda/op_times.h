// KILN_CUDA_OP_TIMES=1: GPU time per op as it runs in a real step. A CUDA event is recorded after
// every op enqueued outside a graph recording; when the stream is next synchronised, the interval
// between consecutive events is added to the later op's total (the first op after a
// synchronisation has no earlier event and is not counted). Launch gaps, clocks and overlap count
// as they really are, unlike ncu's one-kernel-at-a-time replay. The table goes to stderr when the
// backend is destroyed, with the host's enqueue time over the same spans for comparison.
#pragma once
#include <cuda_runtime.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace kiln::cuda {

class OpTimes {
 public:
  OpTimes();
  ~OpTimes();
  OpTimes(const OpTimes&) = delete;
  OpTimes& operator=(const OpTimes&) = delete;

  bool on() const { return on_; }
  // After an op has been enqueued on s.
  void Mark(cudaStream_t s, const std::string& label);
  // After s has been synchronised: reads the events of the span that just ended.
  void Collect();

 private:
  struct Mark_ {
    cudaEvent_t ev;
    std::string label;
    std::chrono::steady_clock::time_point host;
  };
  struct Total {
    int64_t count = 0;
    double ms = 0;
  };
  bool on_ = false;
  std::vector<cudaEvent_t> free_;
  std::vector<Mark_> marks_;
  std::map<std::string, Total> totals_;
  int64_t spans_ = 0;
  double gpu_ms_ = 0, host_ms_ = 0;
};

}  // namespace kiln::cuda
