// The split-K decode attention kernel under CUDA-graph conditions: a decode step is captured
// once per max_seq_len bucket, so the kernel is launched with max_seq_len an upper bound (up to
// twice the true maximum, rounded to a power of two) and must take every token's real length
// from device memory. Each case runs the CPU oracle with the true maximum and the CUDA backend
// with the exact value, 2x and the next power of two >= 2x; all must agree (relative L2 error
// <= 1e-5 in f32, 1e-2 in bf16/f16), with outputs poisoned with NaN first.
// Skipped (with the reason) where no GPU is present.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "ops/attention_case.h"

namespace kiln {
namespace {

using namespace test_ops;

// The exact maximum, twice it, and the next power of two >= twice it (a graph's length bucket).
void RunCase(DType dt, const Case& c, std::mt19937& g) {
  RunAttentionCase(dt, c, g, [](int max_len) {
    int pow2 = 1;
    while (pow2 < 2 * max_len) pow2 *= 2;
    return std::vector<int>{max_len, 2 * max_len, pow2};
  });
}

// The decode cases both kernels must pass: the Llama-3-8B shape at batch 1 and in a ragged batch;
// GQA 8 (one block per kv head), a partial second head chunk (group 6), MHA, odd head dims;
// sliding window, softcap, ALiBi.
void RunDecodeCases(DType dt, std::mt19937& g) {
  RunCase(dt, {128, 4, 8, 16, {511}, {1}}, g);
  RunCase(dt, {128, 4, 8, 16, {0, 1000, 37, 2047, 300}, {1, 1, 1, 1, 1}}, g);
  RunCase(dt, {64, 8, 1, 32, {700, 5}, {1, 1}}, g);
  RunCase(dt, {80, 6, 2, 16, {129, 64, 999}, {1, 1, 1}}, g);
  RunCase(dt, {256, 1, 3, 16, {33}, {1}}, g);
  RunCase(dt, {8, 4, 2, 16, {1500}, {1}}, g);
  RunCase(dt, Case{128, 4, 2, 16, {900, 40}, {1, 1}}.Windowed(100), g);
  RunCase(dt, Case{96, 4, 1, 32, {400}, {1}}.Softcapped(5.0f), g);
  RunCase(dt, Case{128, 2, 2, 16, {1200, 3}, {1, 1}}.WithAlibi(), g);
}

TEST(CudaDecodeAttention, UpperBoundMaxSeqLenGivesTheSameOutput) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(21);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) RunDecodeCases(dt, g);
}

// The stream-K kernel, forced for every decode-only batch: rows cut by block boundaries at any
// offset (batch 1 spreads 8 rows over the resident blocks) and every case above. Each case
// launches three times on one workspace, so the row counters must be back at zero after every
// launch. Then auto mode picks it for a large batch by itself.
TEST(CudaDecodeAttention, StreamKMatchesCpu) {
  KILN_REQUIRE_CUDA();
  setenv("KILN_CUDA_DECODE_STREAMK", "1", 1);
  std::mt19937 g(23);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) RunDecodeCases(dt, g);
  unsetenv("KILN_CUDA_DECODE_STREAMK");
  std::vector<int> ctx(48), q(48, 1);  // 48 sequences x 8 KV heads: past the auto threshold
  for (int& c : ctx) c = std::uniform_int_distribution<int>(0, 1500)(g);
  RunCase(DType::kBF16, {128, 4, 8, 16, ctx, q}, g);
}

TEST(CudaDecodeAttention, PrefillThroughTheSplitKPath) {
  KILN_REQUIRE_CUDA();
  setenv("KILN_CUDA_PREFILL_ATTN", "0", 1);  // every call goes through the split-K kernel
  std::mt19937 g(22);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    RunCase(dt, {128, 4, 2, 16, {0, 17, 300}, {100, 33, 1}}, g);
    RunCase(dt, Case{64, 1, 3, 32, {50}, {70}}.Windowed(20), g);
  }
  unsetenv("KILN_CUDA_PREFILL_ATTN");
}

}  // namespace
}  // namespace kiln
