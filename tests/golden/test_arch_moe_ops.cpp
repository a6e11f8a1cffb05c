// The sparse-MoE ops: the CPU backend's MoeRoute/MoeExperts against a direct computation and
// against the generic Backend:: fallbacks (which other backends inherit until they override),
// on ragged shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"

namespace kiln {
namespace {

struct MoeCase {
  int64_t n, d, f, experts;
  int k;
};

TEST(ArchMoeOps, CpuMatchesReferenceAndGenericFallback) {
  auto b = MakeCpuBackend();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (MoeCase mc : {MoeCase{1, 8, 12, 4, 2}, MoeCase{7, 24, 40, 5, 2}, MoeCase{13, 16, 20, 8, 3}}) {
    std::vector<float> x(mc.n * mc.d), logits(mc.n * mc.experts);
    for (auto& v : x) v = nd(rng);
    for (auto& v : logits) v = nd(rng);
    std::vector<std::vector<float>> gu(mc.experts, std::vector<float>(2 * mc.f * mc.d)),
        dn(mc.experts, std::vector<float>(mc.d * mc.f));
    std::vector<Weight> gate_up(mc.experts), down(mc.experts);
    for (int64_t e = 0; e < mc.experts; ++e) {
      for (auto& v : gu[e]) v = nd(rng) * 0.2f;
      for (auto& v : dn[e]) v = nd(rng) * 0.2f;
      gate_up[e].w = Tensor(gu[e].data(), DType::kF32, {2 * mc.f, mc.d});
      down[e].w = Tensor(dn[e].data(), DType::kF32, {mc.d, mc.f});
    }
    const Tensor xt(x.data(), DType::kF32, {mc.n, mc.d}), lt(logits.data(), DType::kF32, {mc.n, mc.experts});
    std::vector<int32_t> ids(mc.n * mc.k), ids2(mc.n * mc.k);
    std::vector<float> w(mc.n * mc.k), w2(mc.n * mc.k), out(mc.n * mc.d), out2(mc.n * mc.d);
    Tensor idt(ids.data(), DType::kI32, {mc.n, mc.k}), wt(w.data(), DType::kF32, {mc.n, mc.k});
    Tensor idt2(ids2.data(), DType::kI32, {mc.n, mc.k}), wt2(w2.data(), DType::kF32, {mc.n, mc.k});
    b->MoeRoute(idt, wt, lt, mc.k, true);
    b->Backend::MoeRoute(idt2, wt2, lt, mc.k, true);
    EXPECT_EQ(ids, ids2);
    // Direct routing: top-k of the softmax, renormalised.
    for (int64_t t = 0; t < mc.n; ++t) {
      std::vector<int> order(mc.experts);
      for (int e = 0; e < mc.experts; ++e) order[e] = e;
      const float* l = &logits[t * mc.experts];
      std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return l[a] > l[c]; });
      double sum = 0;
      for (int j = 0; j < mc.k; ++j) sum += std::exp(static_cast<double>(l[order[j]]));
      for (int j = 0; j < mc.k; ++j) {
        EXPECT_EQ(ids[t * mc.k + j], order[j]);
        EXPECT_NEAR(w[t * mc.k + j], std::exp(static_cast<double>(l[order[j]])) / sum, 1e-6);
      }
    }
    const Tensor ot(out.data(), DType::kF32, {mc.n, mc.d}), ot2(out2.data(), DType::kF32, {mc.n, mc.d});
    b->MoeExperts(ot, xt, gate_up, down, idt, wt, Backend::Activation::kSilu);
    b->Backend::MoeExperts(ot2, xt, gate_up, down, idt, wt, Backend::Activation::kSilu);
    for (int64_t t = 0; t < mc.n; ++t)
      for (int64_t c = 0; c < mc.d; ++c) {
        double want = 0;
        for (int j = 0; j < mc.k; ++j) {
          const int e = ids[t * mc.k + j];
          double acc = 0;
          for (int64_t r = 0; r < mc.f; ++r) {
            double g = 0, u = 0;
            for (int64_t i = 0; i < mc.d; ++i) {
              g += gu[e][r * mc.d + i] * x[t * mc.d + i];
              u += gu[e][(mc.f + r) * mc.d + i] * x[t * mc.d + i];
            }
            acc += dn[e][c * mc.f + r] * (g / (1 + std::exp(-g))) * u;
          }
          want += w[t * mc.k + j] * acc;
        }
        EXPECT_NEAR(out[t * mc.d + c], want, 1e-4 * (1 + std::fabs(want)));
        EXPECT_NEAR(out2[t * mc.d + c], want, 1e-4 * (1 + std::fabs(want)));
      }
  }
}

}  // namespace
}  // namespace kiln
