// kiln bench on the CPU backend (stories260K): both modes run end to end, their JSON carries
// the figures PERFORMANCE.md quotes, and bad arguments are clear errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_executor_util.h"
#include "test_util.h"

namespace kiln {
namespace {

using kiln::test::RunKiln;

TEST(BenchCli, LatencyModeReportsDecodeFigures) {
  const std::string& e = testing_exec::EngineDir("stories");
  auto r = RunKiln({"bench", "--engine", e, "--device", "cpu", "--batch", "3", "--isl", "12", "--osl", "6",
                    "--iterations", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["mode"], "latency");
  EXPECT_EQ(j["batch"], 3);
  EXPECT_GT(j["ttft_ms"].get<double>(), 0.0);
  EXPECT_GT(j["tpot_ms"].get<double>(), 0.0);
  EXPECT_NEAR(j["decode_tokens_per_s"].get<double>(), 3 * 1000.0 / j["tpot_ms"].get<double>(), 1e-6);
  EXPECT_GT(j["bytes_per_step_gb"].get<double>(), 0.0);
}

TEST(BenchCli, ThroughputModeCompletesEveryRequest) {
  const std::string& e = testing_exec::EngineDir("stories");
  auto r = RunKiln({"bench", "--mode", "throughput", "--engine", e, "--device", "cpu", "--isl", "20", "--osl", "7",
                    "--num-requests", "25", "--max-batch-size", "8", "--max-num-tokens", "64", "--concurrency", "10",
                    "--disable-prefix-caching", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output_tokens"], 25 * 7);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["max_batch_size"], 8);
  EXPECT_GT(j["steps"].get<int>(), 7);
  EXPECT_GT(j["ttft_ms"]["p99"].get<double>(), 0.0);
  EXPECT_GE(j["tpot_ms"]["p90"].get<double>(), j["tpot_ms"]["p50"].get<double>());
}

TEST(BenchCli, BadArgumentsAreClearErrors) {
  const std::string& e = testing_exec::EngineDir("stories");
  auto r = RunKiln({"bench", "--mode", "throughput", "--engine", e, "--device", "cpu", "--isl", "0", "--osl", "4"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.crashed);
  EXPECT_NE(r.err.find("--isl"), std::string::npos) << r.err;
  r = RunKiln({"bench", "--engine", e, "--device", "cpu", "--isl", "4", "--osl", "4", "--mode", "fastest"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.crashed);
}

}  // namespace
}  // namespace kiln
