// The tensor-core prefill attention kernel (prefill_attention.cu) on long and ragged prefill
// batches against the CPU oracle: sequences up to 4096 tokens, GQA 4 and 8, several sequences
// packed in one step, chunked prefill (a chunk attending to its cached prefix plus the causal part
// of itself), block sizes 16 / 32 / 48 / 64, head dims 64 / 96 / 128 / 256, sliding window, softcap
// and ALiBi. bf16 and f16, relative L2 error <= 1e-2, outputs poisoned with NaN first.
// Skipped (with the reason) where no GPU is present.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "ops/attention_case.h"

namespace kiln {
namespace {

using namespace test_ops;

void RunCase(DType dt, const Case& c, std::mt19937& g) {
  RunAttentionCase(dt, c, g, [](int max_len) { return std::vector<int>{max_len}; });
}

TEST(CudaPrefillAttention, LongRaggedAndChunkedPrefill) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(31);
  for (DType dt : {DType::kBF16, DType::kF16}) {
    // One long sequence (GQA 4), several sequences (GQA 8), chunked prefill behind cached prefixes.
    RunCase(dt, {128, 4, 2, 16, {0}, {4096}}, g);
    RunCase(dt, {128, 8, 1, 16, {0, 0, 0}, {1000, 517, 2048}}, g);
    RunCase(dt, {128, 4, 2, 32, {2048, 700, 0, 5}, {512, 300, 129, 1}}, g);
    // Block sizes that are multiples of 16 but not powers of two; other head dims.
    RunCase(dt, {128, 4, 2, 48, {77}, {600}}, g);
    RunCase(dt, {64, 8, 1, 64, {100}, {2000}}, g);
    RunCase(dt, {96, 4, 1, 16, {0, 31}, {333, 64}}, g);
    // Sliding window across many tiles, softcap, ALiBi.
    RunCase(dt, Case{128, 4, 2, 16, {1000}, {1500}}.Windowed(700), g);
    RunCase(dt, Case{256, 2, 2, 16, {0}, {1024}}.Softcapped(30.0f), g);
    RunCase(dt, Case{128, 4, 2, 16, {0, 33}, {700, 190}}.WithAlibi(), g);
  }
}

}  // namespace
}  // namespace kiln
