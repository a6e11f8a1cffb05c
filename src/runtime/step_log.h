// KILN_STEP_LOG=<file>: one CSV line per executor step (what it held and where its time went),
// for finding what a throughput run spends its time on. Off (no cost) when the variable is unset.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace kiln {

struct StepRecord {
  int n_tokens = 0;       // tokens computed
  int n_chunks = 0;       // sequences in the step
  int n_one_token = 0;    // of those, one-token chunks (decode)
  int64_t decode_kv = 0;  // KV positions the one-token chunks attend to, summed
  int n_logits = 0;
  int running = 0, waiting = 0;
  int64_t kv_blocks_used = 0;
  double schedule_us = 0;  // Scheduler::Schedule
  double forward_us = 0;   // packing, forward pass, sampling, ids back on the host
  double finish_us = 0;    // commit and token handling
  double gap_us = 0;       // since the previous step ended (arrivals, cancels, metrics)
};

class StepLog {
 public:
  StepLog();  // opens $KILN_STEP_LOG when set
  ~StepLog();
  StepLog(const StepLog&) = delete;
  StepLog& operator=(const StepLog&) = delete;
  bool on() const { return file_ != nullptr; }
  void Write(const StepRecord& r);

 private:
  std::FILE* file_ = nullptr;
  uint64_t step_ = 0;
};

}  // namespace kiln
