// kiln bench-throughput (to become `kiln bench --mode throughput`): see bench_throughput.h.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "bench_requests.h"
#include "bench_throughput.h"
#include "command.h"
#include "engine_flags.h"

namespace kiln::cli {
namespace {

using Clock = BenchClock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

nlohmann::json Stats(const std::vector<double>& v) {
  return {
      {"mean", Mean(v)}, {"p50", Percentile(v, 50)}, {"p90", Percentile(v, 90)}, {"p99", Percentile(v, 99)}};
}

}  // namespace

void AddThroughputFlags(CLI::App* cmd, ThroughputArgs* a) {
  ExecutorOptions& e = a->exec;
  cmd->add_option("--engine", a->engine_dir, "engine directory (from kiln build)")->required();
  cmd->add_option("--isl", a->isl, "input (prompt) tokens per request")->required();
  cmd->add_option("--osl", a->osl, "output tokens per request (EOS ignored)")->required();
  cmd->add_option("--num-requests", a->num_requests, "requests to run");
  cmd->add_option("--concurrency", a->concurrency,
                  "requests in flight at once (0 = all queued at the start)");
  cmd->add_option("--warmup", a->warmup, "short requests run before timing");
  cmd->add_option("--seed", a->seed, "seed of the random prompt ids");
  cmd->add_flag("--json", a->json, "print the report as JSON");
  AddExecutorFlags(cmd, &e);
}

int RunThroughputBench(const ThroughputArgs& a) {
  if (a.isl <= 0 || a.osl <= 0) Fail("--isl and --osl must be positive");
  if (a.num_requests <= 0) Fail("--num-requests must be positive");
  if (a.concurrency < 0) Fail("--concurrency must be >= 0");
  auto ex = ValueOrFail(Executor::Create(a.engine_dir, a.exec));
  if (a.isl + a.osl > ex->max_seq_len())
    Fail("--isl + --osl (" + std::to_string(a.isl + a.osl) + ") exceeds max_seq_len " +
         std::to_string(ex->max_seq_len()) + " (raise --max-seq-len)");
  const MemoryPlan plan = ex->memory_plan();
  std::fprintf(stderr,
               "kiln bench: %s | weights %.1f MiB, KV %.1f MiB (%lld blocks of %d), activations %.1f MiB, "
               "workspace %.1f MiB\n",
               ex->device_name().c_str(), plan.weights / 1048576.0, plan.kv_cache / 1048576.0,
               static_cast<long long>(plan.kv_blocks), plan.block_size, plan.activations / 1048576.0,
               plan.workspace / 1048576.0);

  std::mt19937_64 rng(a.seed);
  const int64_t V = ex->vocab_size();
  auto make = [&](int isl, int osl) { return SyntheticRequest(rng, V, isl, osl); };
  std::vector<Timing> timings;
  if (a.warmup > 0) {
    std::vector<Request> w;
    for (int i = 0; i < a.warmup; ++i) w.push_back(make(std::min(a.isl, 32), std::min(a.osl, 4)));
    Drive(*ex, w, 0, &timings);
  }
  std::vector<Request> reqs;
  for (int i = 0; i < a.num_requests; ++i) reqs.push_back(make(a.isl, a.osl));
  const ExecutorMetrics before = ex->Metrics();
  const auto t0 = Clock::now();
  Drive(*ex, reqs, a.concurrency, &timings);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  const ExecutorMetrics after = ex->Metrics();

  std::vector<double> ttft, tpot, e2e;
  int64_t out_tokens = 0;
  int failed = 0;
  std::string first_error;
  for (const Timing& t : timings) {
    if (t.finish_reason == "error") {
      if (failed++ == 0) first_error = t.error;
      continue;
    }
    out_tokens += t.tokens;
    if (t.has_first) ttft.push_back(t.ttft_ms());
    if (t.tokens > 1) tpot.push_back(t.tpot_ms());
    e2e.push_back(t.e2e_ms());
  }
  const double tok_s = out_tokens / elapsed, req_s = a.num_requests / elapsed;
  nlohmann::json j = {
      {"mode", "throughput"},
      {"engine", a.engine_dir},
      {"device", ex->device_name()},
      {"isl", a.isl},
      {"osl", a.osl},
      {"num_requests", a.num_requests},
      {"concurrency", a.concurrency},
      {"max_batch_size", a.exec.max_batch_size},
      {"max_num_tokens", a.exec.max_num_tokens},
      {"scheduler_policy", a.exec.scheduler_policy},
      {"kv_blocks", plan.kv_blocks},
      {"block_size", plan.block_size},
      {"elapsed_s", elapsed},
      {"output_tokens", out_tokens},
      {"output_tokens_per_s", tok_s},
      {"requests_per_s", req_s},
      {"total_tokens_per_s", (out_tokens + static_cast<int64_t>(a.isl) * a.num_requests) / elapsed},
      {"ttft_ms", Stats(ttft)},
      {"tpot_ms", Stats(tpot)},
      {"e2e_ms", Stats(e2e)},
      {"steps", after.steps - before.steps},
      {"preemptions", after.preemptions - before.preemptions},
      {"failed", failed},
  };
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("throughput: ISL %d / OSL %d, %d requests, concurrency %s on %s\n", a.isl, a.osl,
                a.num_requests, a.concurrency > 0 ? std::to_string(a.concurrency).c_str() : "all",
                ex->device_name().c_str());
    std::printf(
        "  output tokens/s %10.1f   requests/s %8.3f   elapsed %.2f s   steps %llu   preemptions %llu\n",
        tok_s, req_s, elapsed, static_cast<unsigned long long>(after.steps - before.steps),
        static_cast<unsigned long long>(after.preemptions - before.preemptions));
    auto row = [](const char* name, const std::vector<double>& v) {
      std::printf("  %-5s ms  p50 %9.2f  p90 %9.2f  p99 %9.2f  mean %9.2f\n", name, Percentile(v, 50),
                  Percentile(v, 90), Percentile(v, 99), Mean(v));
    };
    row("TTFT", ttft);
    row("TPOT", tpot);
    row("E2E", e2e);
  }
  std::fflush(stdout);
  ex->Shutdown(true);
  if (failed > 0) {
    std::fprintf(stderr, "kiln: error: %d requests failed (first: %s)\n", failed, first_error.c_str());
    return 1;
  }
  return 0;
}


}  // namespace kiln::cli
