// kiln bench --mode throughput: synthetic fixed-length requests (random prompt ids, ignore-EOS,
// greedy) through the in-flight batching Executor, like trtllm-bench: output tokens/s,
// requests/s, TTFT / TPOT / end-to-end latency percentiles; JSON with --json.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "kiln/executor.h"

namespace kiln::cli {

struct ThroughputArgs {
  std::string engine_dir;
  ExecutorOptions exec;
  int isl = 128;  // prompt tokens per request
  int osl = 128;  // output tokens per request
  int num_requests = 100;
  int concurrency = 0;  // requests in flight at once (0 = all queued at the start)
  int warmup = 1;       // short requests run before timing
  uint64_t seed = 0;    // prompt ids
  bool json = false;
};

// Adds --engine, the executor knobs and the throughput flags to cmd (for the merged bench command).
void AddThroughputFlags(CLI::App* cmd, ThroughputArgs* args);
// Runs the benchmark and prints the report; returns the process exit code.
int RunThroughputBench(const ThroughputArgs& args);

}  // namespace kiln::cli
