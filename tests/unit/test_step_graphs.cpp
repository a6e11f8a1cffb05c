// Decode steps recorded as CUDA graphs (Model::Forward) give the same logits as the same steps
// run op by op, for batch 1 and a ragged batch, while sequences grow across the graphs' length
// buckets (256 -> 512). Skipped where no GPU exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/step_builder.h"
#include "test_executor_util.h"

namespace kiln {
namespace {

struct DecodeRun {
  std::vector<std::vector<float>> logits;  // per decode step, [n_seqs * vocab]
  int graphs = 0;
};

// Prefills `n_seqs` prompts, then runs `steps` greedy decode steps of all of them together.
DecodeRun Decode(const std::string& dir, bool graphs, int n_seqs, int steps) {
  if (graphs)
    unsetenv("KILN_CUDA_GRAPHS");
  else
    setenv("KILN_CUDA_GRAPHS", "0", 1);
  DecodeRun run;
  auto backend = MakeCudaBackend(0, DType::kF32);
  EXPECT_TRUE(backend.ok()) << backend.status().message();
  if (!backend.ok()) return run;
  auto model = Model::Load(dir, **backend);
  EXPECT_TRUE(model.ok()) << model.status().message();
  if (!model.ok()) return run;
  const ModelConfig& c = (*model)->config();
  const int block_size = 16, max_len = 600, blocks_per_seq = max_len / block_size;
  auto kv = KvCache::Create(**backend, c, int64_t{n_seqs} * blocks_per_seq, block_size);
  EXPECT_TRUE(kv.ok());
  EXPECT_TRUE((*model)->Reserve(max_len, n_seqs).ok());
  StepBuilder sb;
  EXPECT_TRUE(sb.Reserve(**backend, max_len, n_seqs, blocks_per_seq).ok());
  std::vector<std::vector<int32_t>> tokens(n_seqs), tables(n_seqs);
  for (int s = 0; s < n_seqs; ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
    for (int i = 0; i < 100 + 20 * s; ++i) tokens[s].push_back(1 + (i * 7 + s * 13) % 500);  // ragged prompts
  }
  const size_t V = static_cast<size_t>(c.vocab_size);
  std::vector<float> host;
  auto step = [&](std::vector<SequenceChunk> chunks, int first_seq, bool record) {
    auto in = sb.Build(chunks, block_size);
    ASSERT_TRUE(in.ok()) << in.status().message();
    auto logits = (*model)->Forward(*in, (*kv)->layers());
    ASSERT_TRUE(logits.ok()) << logits.status().message();
    host.resize(static_cast<size_t>(logits->numel()));
    ASSERT_TRUE((*backend)->CopyToHostF32(host.data(), *logits).ok());
    for (size_t s = 0; s < chunks.size(); ++s) {
      const float* row = host.data() + s * V;
      tokens[first_seq + s].push_back(static_cast<int32_t>(std::max_element(row, row + V) - row));
    }
    if (record) run.logits.push_back(host);
  };
  for (int s = 0; s < n_seqs; ++s) {  // prefill one sequence at a time
    SequenceChunk k{tokens[s], 0, tables[s], LogitsWanted::kLast};
    step({k}, s, false);
  }
  for (int i = 0; i < steps; ++i) {
    std::vector<SequenceChunk> chunks;
    for (int s = 0; s < n_seqs; ++s) {
      const int n = static_cast<int>(tokens[s].size());
      chunks.push_back({std::span<const int32_t>(tokens[s]).subspan(n - 1, 1), n - 1, tables[s], LogitsWanted::kLast});
    }
    step(chunks, 0, true);
  }
  run.graphs = (*model)->graphs_recorded();
  unsetenv("KILN_CUDA_GRAPHS");
  return run;
}

class StepGraphs : public ::testing::TestWithParam<int> {};

TEST_P(StepGraphs, ReplayedDecodeStepsEqualEagerSteps) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device (or built without CUDA)";
  const std::string& dir = testing_exec::EngineDir("stories");
  const int n_seqs = GetParam(), steps = 200;  // crosses the 256-token bucket boundary
  const DecodeRun eager = Decode(dir, false, n_seqs, steps);
  const DecodeRun graph = Decode(dir, true, n_seqs, steps);
  EXPECT_EQ(eager.graphs, 0);
  EXPECT_GE(graph.graphs, 2) << "a graph per length bucket was expected";
  ASSERT_EQ(eager.logits.size(), graph.logits.size());
  double worst = 0;
  for (size_t i = 0; i < eager.logits.size(); ++i) {
    ASSERT_EQ(eager.logits[i].size(), graph.logits[i].size());
    for (size_t j = 0; j < eager.logits[i].size(); ++j) {
      const double a = eager.logits[i][j], b = graph.logits[i][j];
      worst = std::max(worst, std::abs(a - b) / (1.0 + std::abs(a)));
    }
  }
  // Same kernels; only the split-K partition of the attention differs (the graph's length bound).
  EXPECT_LT(worst, 1e-5) << "graph and eager decode steps disagree";
  std::printf("[ batch %d ] %d graphs recorded, worst relative logit difference %.2e\n", n_seqs, graph.graphs,
              worst);
}

INSTANTIATE_TEST_SUITE_P(Cuda, StepGraphs, ::testing::Values(1, 5));

}  // namespace
}  // namespace kiln
