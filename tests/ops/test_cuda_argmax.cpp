// Device greedy argmax against the CPU oracle: random rows with ties, NaN and all -inf rows,
// odd vocab sizes, f32 and bf16 (both sides see the same bf16 values, so ids must be equal).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"

namespace kiln {
namespace {

TEST(CudaOpsArgmax, MatchesCpuOnRaggedRowsWithTiesAndNaN) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA GPU: the device argmax is checked on the H100 (bench/h100_run.sh)";
  auto cpu = MakeCpuBackend();
  std::mt19937 rng(7);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    auto gpu = MakeCudaBackend(0, dt);
    ASSERT_TRUE(gpu.ok()) << gpu.status().message();
    Backend& g = **gpu;
    for (int64_t V : {1, 7, 511, 1000, 32001, 128256}) {
      for (int64_t n : {1, 3, 17}) {
        std::vector<float> host(n * V);
        std::uniform_real_distribution<float> u(-4, 4);
        for (auto& v : host) v = std::round(u(rng) * 4) / 4;  // coarse values: many ties
        if (n > 1) host[V + (V / 2)] = NAN;                       // a NaN in row 1
        if (n > 2)
          for (int64_t j = 0; j < V; ++j) host[2 * V + j] = -INFINITY;  // an all -inf row
        // Both sides see the values the GPU holds (bf16-rounded when dt is bf16).
        std::vector<uint8_t> dev_bytes(DTypeBytes(dt, n * V));
        ASSERT_TRUE(ConvertElements(host.data(), DType::kF32, dev_bytes.data(), dt, n * V).ok());
        std::vector<float> seen(n * V);
        ASSERT_TRUE(ConvertElements(dev_bytes.data(), dt, seen.data(), DType::kF32, n * V).ok());

        auto dl = AllocBuffer(g, dev_bytes.size());
        auto di = AllocBuffer(g, n * sizeof(int32_t));
        ASSERT_TRUE(dl.ok() && di.ok());
        ASSERT_TRUE(g.CopyToDevice(dl->get(), dev_bytes.data(), dev_bytes.size()).ok());
        std::vector<int32_t> poison(n, -7);
        ASSERT_TRUE(g.CopyToDevice(di->get(), poison.data(), n * sizeof(int32_t)).ok());
        g.ArgmaxRows(Tensor(di->get(), DType::kI32, {n}), Tensor(dl->get(), dt, {n, V}));
        std::vector<int32_t> got(n);
        ASSERT_TRUE(g.CopyToHost(got.data(), di->get(), n * sizeof(int32_t)).ok());

        std::vector<int32_t> want(n);
        cpu->ArgmaxRows(Tensor(want.data(), DType::kI32, {n}), Tensor(seen.data(), DType::kF32, {n, V}));
        for (int64_t r = 0; r < n; ++r)
          EXPECT_EQ(got[r], want[r]) << DTypeName(dt) << " V=" << V << " n=" << n << " row " << r;
        if (n > 2) EXPECT_EQ(got[2], 0) << "all -inf row";
      }
    }
  }
}

TEST(CpuArgmax, LowestIdWinsTiesNaNIsMinusInf) {
  auto cpu = MakeCpuBackend();
  std::vector<float> logits = {1, 3, 3, NAN, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  std::vector<int32_t> ids(2, -1);
  cpu->ArgmaxRows(Tensor(ids.data(), DType::kI32, {2}), Tensor(logits.data(), DType::kF32, {2, 4}));
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 0);
}

}  // namespace
}  // namespace kiln
