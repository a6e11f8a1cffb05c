#include "runtime/step_log.h"

#include <cstdlib>

namespace kiln {

StepLog::StepLog() {
  const char* path = std::getenv("KILN_STEP_LOG");
  if (!path || !*path) return;
  file_ = std::fopen(path, "w");
  if (!file_) {
    std::fprintf(stderr, "kiln: KILN_STEP_LOG: cannot open %s for writing; no step log\n", path);
    return;
  }
  std::fprintf(file_,
               "step,n_tokens,n_chunks,n_one_token,decode_kv,n_logits,running,waiting,kv_blocks_used,"
               "schedule_us,forward_us,finish_us,gap_us\n");
}

StepLog::~StepLog() {
  if (file_) std::fclose(file_);
}

void StepLog::Write(const StepRecord& r) {
  if (!file_) return;
  std::fprintf(file_, "%llu,%d,%d,%d,%lld,%d,%d,%d,%lld,%.1f,%.1f,%.1f,%.1f\n",
               static_cast<unsigned long long>(step_++), r.n_tokens, r.n_chunks, r.n_one_token,
               static_cast<long long>(r.decode_kv), r.n_logits, r.running, r.waiting,
               static_cast<long long>(r.kv_blocks_used), r.schedule_us, r.forward_us, r.finish_us, r.gap_us);
}

}  // namespace kiln
