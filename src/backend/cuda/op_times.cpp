#include "backend/cuda/op_times.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace kiln::cuda {

OpTimes::OpTimes() {
  const char* v = std::getenv("KILN_CUDA_OP_TIMES");
  on_ = v && *v && v[0] != '0';
}

OpTimes::~OpTimes() {
  if (!on_) return;
  for (Mark_& m : marks_) free_.push_back(m.ev);
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
  if (totals_.empty()) return;
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(stderr, "\nkiln: GPU time per op (KILN_CUDA_OP_TIMES), %lld spans: GPU %.3f ms, host enqueue %.3f ms\n",
               static_cast<long long>(spans_), gpu_ms_, host_ms_);
  std::fprintf(stderr, "%-44s %8s %12s %10s %6s\n", "op", "count", "total ms", "mean us", "share");
  for (const auto& [label, t] : rows)
    std::fprintf(stderr, "%-44s %8lld %12.3f %10.2f %5.1f%%\n", label.c_str(), static_cast<long long>(t.count), t.ms,
                 1e3 * t.ms / static_cast<double>(t.count), gpu_ms_ > 0 ? 100.0 * t.ms / gpu_ms_ : 0.0);
}

void OpTimes::Mark(cudaStream_t s, const std::string& label) {
  cudaEvent_t ev = nullptr;
  if (!free_.empty()) {
    ev = free_.back();
    free_.pop_back();
  } else if (cudaEventCreate(&ev) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (cudaEventRecord(ev, s) != cudaSuccess) {
    cudaGetLastError();
    free_.push_back(ev);
    return;
  }
  marks_.push_back({ev, label, std::chrono::steady_clock::now()});
}

void OpTimes::Collect() {
  if (marks_.size() >= 2) {
    ++spans_;
    for (size_t i = 1; i < marks_.size(); ++i) {
      float ms = 0;
      if (cudaEventElapsedTime(&ms, marks_[i - 1].ev, marks_[i].ev) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      Total& t = totals_[marks_[i].label];
      ++t.count;
      t.ms += ms;
      gpu_ms_ += ms;
    }
    host_ms_ += std::chrono::duration<double, std::milli>(marks_.back().host - marks_.front().host).count();
  }
  for (Mark_& m : marks_) free_.push_back(m.ev);
  marks_.clear();
}

}  // namespace kiln::cuda
