// Synthetic fixed-length requests and the loop that drives them through an Executor, shared
// by kiln bench's latency and throughput modes.
#pragma once
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kiln/executor.h"

namespace kiln::cli {

using BenchClock = std::chrono::steady_clock;

// What the client saw of one request.
struct Timing {
  BenchClock::time_point enqueued, first, done;
  int tokens = 0;
  bool has_first = false;
  std::string finish_reason, error;
  double ttft_ms() const { return std::chrono::duration<double, std::milli>(first - enqueued).count(); }
  double e2e_ms() const { return std::chrono::duration<double, std::milli>(done - enqueued).count(); }
  // Mean time between output tokens after the first (0 with fewer than two tokens).
  double tpot_ms() const {
    return tokens > 1 ? std::chrono::duration<double, std::milli>(done - first).count() / (tokens - 1) : 0.0;
  }
};

// A greedy, EOS-ignoring request of `isl` random prompt ids in [0, vocab) and `osl` outputs,
// without detokenization or logprobs (the bench measures the model).
Request SyntheticRequest(std::mt19937_64& rng, int64_t vocab, int isl, int osl);

// Runs `reqs` keeping at most `concurrency` in flight (0 = all at once); fills timings.
void Drive(Executor& ex, const std::vector<Request>& reqs, int concurrency, std::vector<Timing>* timings);

}  // namespace kiln::cli
