// Every CUDA op against the CPU reference backend on random ragged shapes, in f32 (exactness:
// relative L2 error <= 1e-5) and bf16/f16 (<= 1e-2). Outputs are poisoned with NaN before each
// run, so an unwritten element fails. Skipped (with the reason) where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "ops/attention_case.h"
#include "ops/cuda_test_util.h"

namespace kiln {
namespace {

using namespace test_ops;

double Tol(DType dt) { return dt == DType::kF32 ? 1e-5 : 1e-2; }

Buf Poisoned(Backend& b, DType dt, const std::vector<int64_t>& shape) {
  return Upload(b, dt, shape, std::vector<float>(Numel(shape), std::nanf("")));
}

// The CPU oracle and one CUDA backend.
struct Pair {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  std::unique_ptr<Backend> gpu;
  DType dt;
  explicit Pair(DType d) : dt(d) {
    auto g = MakeCudaBackend(0, d);
    EXPECT_TRUE(g.ok()) << g.status().message();
    if (g.ok()) gpu = std::move(*g);
  }
  void Sync() {
    Status st = gpu->Synchronize();
    EXPECT_TRUE(st.ok()) << st.message();
  }
};

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

std::string Name(DType dt) { return std::string(DTypeName(dt)); }

TEST(CudaOpsBasics, CreateAndName) {
  KILN_REQUIRE_CUDA();
  auto b = MakeCudaBackend(0, DType::kBF16);
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_NE((*b)->name().find("cuda:0"), std::string::npos);
  EXPECT_EQ((*b)->act_dtype(), DType::kBF16);
  EXPECT_FALSE(MakeCudaBackend(0, DType::kI8).ok());
  EXPECT_FALSE(MakeCudaBackend(999, DType::kF32).ok());
}

TEST(CudaOpsBasics, BadInputIsAnErrorNotACrash) {
  KILN_REQUIRE_CUDA();
  Pair p(DType::kBF16);
  std::mt19937 g(1);
  Buf a = Upload(*p.gpu, DType::kF32, {4, 8}, Random(g, 32));  // wrong dtype for a bf16 backend
  Buf o = Poisoned(*p.gpu, DType::kBF16, {4, 8});
  p.gpu->Add(o.t, a.t, a.t);
  Status st = p.gpu->Synchronize();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Add"), std::string::npos) << st.message();
  EXPECT_TRUE(p.gpu->Synchronize().ok());  // reported once, the backend stays usable
}

TEST(CudaOpsWeights, UploadConvertsEveryFloatType) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(2);
  for (DType act : kDTypes) {
    Pair p(act);
    for (DType src : kDTypes) {
      const int64_t rows = Rand(g, 1, 40), cols = Rand(g, 1, 300);
      std::vector<float> v = RoundTo(src, Random(g, rows * cols));
      std::vector<uint8_t> bytes(DTypeBytes(src, rows * cols));
      ASSERT_TRUE(ConvertElements(v.data(), DType::kF32, bytes.data(), src, rows * cols).ok());
      auto w = p.gpu->UploadWeight(bytes.data(), src, rows, cols);
      ASSERT_TRUE(w.ok()) << w.status().message();
      EXPECT_EQ(w->w.dtype, act);
      ExpectClose(RoundTo(act, v), Read(*p.gpu, w->w), 0.0, "upload " + Name(src) + "->" + Name(act));
      p.gpu->Free(w->w.data);
    }
  }
}

TEST(CudaOpsWeights, RandomWeightIsSeededAndScaled) {
  KILN_REQUIRE_CUDA();
  Pair p(DType::kBF16);
  auto a = p.gpu->RandomWeight(DType::kBF16, 1001, 333, 42, 0.05f);
  auto b = p.gpu->RandomWeight(DType::kBF16, 1001, 333, 42, 0.05f);
  auto c = p.gpu->RandomWeight(DType::kBF16, 1001, 333, 43, 0.05f);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto va = Read(*p.gpu, a->w), vb = Read(*p.gpu, b->w), vc = Read(*p.gpu, c->w);
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
  double mean = 0, sq = 0;
  float mx = 0;
  for (float x : va) {
    mean += x;
    sq += double(x) * x;
    mx = std::max(mx, std::fabs(x));
  }
  mean /= va.size();
  sq /= va.size();
  EXPECT_LE(mx, 0.0501f);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(std::sqrt(sq), 0.05 / std::sqrt(3.0), 1e-3);  // uniform(-s, s) has rms s/sqrt(3)
  for (auto* w : {&a, &b, &c}) p.gpu->Free((*w)->w.data);
}

TEST(CudaOpsGather, EmbeddingAndGatherRows) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(3);
  for (DType dt : kDTypes) {
    Pair p(dt);
    for (int rep = 0; rep < 6; ++rep) {
      const int vocab = Rand(g, 1, 2000) | 1, d = Rand(g, 1, 700), n = Rand(g, 1, 300);
      const float scale = rep % 2 ? 1.0f : 1.7f;
      std::vector<float> table = RoundTo(dt, Random(g, int64_t(vocab) * d));
      std::vector<int32_t> ids(n);
      for (auto& i : ids) i = Rand(g, 0, vocab - 1);
      auto wt_c = p.cpu->UploadWeight(table.data(), DType::kF32, vocab, d);
      auto wt_g = p.gpu->UploadWeight(table.data(), DType::kF32, vocab, d);
      ASSERT_TRUE(wt_c.ok() && wt_g.ok());
      Buf id_c = UploadI32(*p.cpu, {n}, ids), id_g = UploadI32(*p.gpu, {n}, ids);
      Buf oc = Poisoned(*p.cpu, DType::kF32, {n, d}), og = Poisoned(*p.gpu, dt, {n, d});
      p.cpu->Embedding(oc.t, *wt_c, id_c.t, scale);
      p.gpu->Embedding(og.t, *wt_g, id_g.t, scale);
      p.Sync();
      ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "Embedding " + Name(dt));
      // GatherRows over an activation tensor.
      Buf xc = Upload(*p.cpu, DType::kF32, {vocab, d}, table), xg = Upload(*p.gpu, dt, {vocab, d}, table);
      Buf rc = Poisoned(*p.cpu, DType::kF32, {n, d}), rg = Poisoned(*p.gpu, dt, {n, d});
      p.cpu->GatherRows(rc.t, xc.t, id_c.t);
      p.gpu->GatherRows(rg.t, xg.t, id_g.t);
      p.Sync();
      ExpectClose(Read(*p.cpu, rc.t), Read(*p.gpu, rg.t), 0.0, "GatherRows " + Name(dt));
      p.cpu->Free(wt_c->w.data);
      p.gpu->Free(wt_g->w.data);
    }
  }
}

TEST(CudaOpsNorm, NormAndAddNorm) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(4);
  for (DType dt : kDTypes) {
    Pair p(dt);
    for (int rep = 0; rep < 16; ++rep) {
      const bool rms = rep % 2 == 0, off = (rep / 2) % 2 == 1, bias = !rms && (rep / 4) % 2 == 1;
      const bool in_place = rep % 3 == 0;
      // Every other case has 16-byte rows (the register fast path, up to 8192 columns).
      const int rows = rep < 8 ? Rand(g, 1, 17) : Rand(g, 1, 300);
      const int cols = rep % 2 ? Rand(g, 1, 1024) * 8 : Rand(g, 1, 5000);
      std::vector<float> x = RoundTo(dt, Random(g, int64_t(rows) * cols, -2.0f, 3.0f));
      std::vector<float> dl = RoundTo(dt, Random(g, int64_t(rows) * cols));
      std::vector<float> w = Random(g, cols, 0.5f, 1.5f), b = Random(g, cols);
      const std::string what = Name(dt) + (rms ? " rms" : " layer") + (off ? " +1" : "") + (bias ? " bias" : "") +
                               " [" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
      Buf wc = Upload(*p.cpu, DType::kF32, {cols}, w), wg = Upload(*p.gpu, DType::kF32, {cols}, w);
      Buf bc = Upload(*p.cpu, DType::kF32, {cols}, b), bg = Upload(*p.gpu, DType::kF32, {cols}, b);
      Tensor bct = bias ? bc.t : Tensor(), bgt = bias ? bg.t : Tensor();
      {  // Norm (optionally in place)
        Buf xc = Upload(*p.cpu, DType::kF32, {rows, cols}, x), xg = Upload(*p.gpu, dt, {rows, cols}, x);
        Buf oc = Poisoned(*p.cpu, DType::kF32, {rows, cols}), og = Poisoned(*p.gpu, dt, {rows, cols});
        Tensor otc = in_place ? xc.t : oc.t, otg = in_place ? xg.t : og.t;
        p.cpu->Norm(otc, xc.t, wc.t, bct, 1e-5f, rms, off);
        p.gpu->Norm(otg, xg.t, wg.t, bgt, 1e-5f, rms, off);
        p.Sync();
        ExpectClose(Read(*p.cpu, otc), Read(*p.gpu, otg), Tol(dt), "Norm " + what);
      }
      {  // AddNorm: residual and output both checked
        Buf xc = Upload(*p.cpu, DType::kF32, {rows, cols}, x), xg = Upload(*p.gpu, dt, {rows, cols}, x);
        Buf dc = Upload(*p.cpu, DType::kF32, {rows, cols}, dl), dg = Upload(*p.gpu, dt, {rows, cols}, dl);
        Buf oc = Poisoned(*p.cpu, DType::kF32, {rows, cols}), og = Poisoned(*p.gpu, dt, {rows, cols});
        p.cpu->AddNorm(oc.t, xc.t, dc.t, wc.t, bct, 1e-6f, rms, off);
        p.gpu->AddNorm(og.t, xg.t, dg.t, wg.t, bgt, 1e-6f, rms, off);
        p.Sync();
        ExpectClose(Read(*p.cpu, xc.t), Read(*p.gpu, xg.t), Tol(dt), "AddNorm residual " + what);
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "AddNorm out " + what);
      }
    }
  }
}

TEST(CudaOpsLinear, GemvAndGemmAgainstCpu) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(5);
  const int ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 33, 64, 300};
  for (DType dt : kDTypes) {
    Pair p(dt);
    int rep = 0;
    for (int m : ms) {
      for (int v = 0; v < 2; ++v, ++rep) {
        const int n = Rand(g, 1, 1500), k = v == 0 ? Rand(g, 1, 64) * 8 : Rand(g, 1, 3000);
        const bool bias = rep % 2 == 0;
        std::vector<float> x = RoundTo(dt, Random(g, int64_t(m) * k));
        std::vector<float> w = RoundTo(dt, Random(g, int64_t(n) * k, -0.1f, 0.1f));
        std::vector<float> b = Random(g, n);
        auto wc = p.cpu->UploadWeight(w.data(), DType::kF32, n, k);
        auto wg = p.gpu->UploadWeight(w.data(), DType::kF32, n, k);
        ASSERT_TRUE(wc.ok() && wg.ok());
        Buf xc = Upload(*p.cpu, DType::kF32, {m, k}, x), xg = Upload(*p.gpu, dt, {m, k}, x);
        Buf bc = Upload(*p.cpu, DType::kF32, {n}, b), bg = Upload(*p.gpu, DType::kF32, {n}, b);
        Buf oc = Poisoned(*p.cpu, DType::kF32, {m, n}), og = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->Linear(oc.t, xc.t, *wc, bias ? bc.t : Tensor());
        p.gpu->Linear(og.t, xg.t, *wg, bias ? bg.t : Tensor());
        p.Sync();
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt),
                    "Linear " + Name(dt) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                        " k=" + std::to_string(k) + (bias ? " bias" : ""));
        p.cpu->Free(wc->w.data);
        p.gpu->Free(wg->w.data);
      }
    }
  }
}

// Switches the opt-in fused kernels (KILN_CUDA_FUSED_*) on while it lives.
struct FusedKernelsOn {
  FusedKernelsOn() {
    for (const char* n : kNames) setenv(n, "1", 1);
  }
  ~FusedKernelsOn() {
    for (const char* n : kNames) unsetenv(n);
  }
  static constexpr const char* kNames[] = {"KILN_CUDA_FUSED_GATED", "KILN_CUDA_FUSED_RESIDUAL"};
};

// The fused gated projection (decode-sized m: one streaming pass) and its unfused fallback
// (larger m) against the CPU's Linear + GatedActivation; the scratch is poisoned and unused by
// the fused path.
TEST(CudaOpsLinear, GatedLinearAgainstCpu) {
  KILN_REQUIRE_CUDA();
  const FusedKernelsOn fused_on;  // opt-in kernels: on for the backends this test creates
  std::mt19937 g(15);
  const int ms[] = {1, 2, 3, 5, 8, 9, 17};
  const Backend::Activation acts[] = {Backend::Activation::kSilu, Backend::Activation::kGeluTanh,
                                      Backend::Activation::kGeluErf, Backend::Activation::kRelu};
  for (DType dt : kDTypes) {
    Pair p(dt);
    int rep = 0;
    for (int m : ms) {
      for (int v = 0; v < 2; ++v, ++rep) {
        const int f = Rand(g, 1, 700), k = v == 0 ? Rand(g, 1, 64) * 8 : Rand(g, 1, 1500);
        const bool bias = rep % 2 == 1;
        const Backend::Activation act = acts[rep % 4];
        std::vector<float> x = RoundTo(dt, Random(g, int64_t(m) * k));
        std::vector<float> w = RoundTo(dt, Random(g, int64_t(2 * f) * k, -0.1f, 0.1f));
        std::vector<float> b = Random(g, 2 * f);
        auto wc = p.cpu->UploadWeight(w.data(), DType::kF32, 2 * f, k);
        auto wg = p.gpu->UploadWeight(w.data(), DType::kF32, 2 * f, k);
        ASSERT_TRUE(wc.ok() && wg.ok());
        Buf xc = Upload(*p.cpu, DType::kF32, {m, k}, x), xg = Upload(*p.gpu, dt, {m, k}, x);
        Buf bc = Upload(*p.cpu, DType::kF32, {2 * f}, b), bg = Upload(*p.gpu, DType::kF32, {2 * f}, b);
        Buf sc = Poisoned(*p.cpu, DType::kF32, {m, 2 * f}), sg = Poisoned(*p.gpu, dt, {m, 2 * f});
        Buf oc = Poisoned(*p.cpu, DType::kF32, {m, f}), og = Poisoned(*p.gpu, dt, {m, f});
        p.cpu->GatedLinear(oc.t, xc.t, *wc, bias ? bc.t : Tensor(), act, sc.t);
        p.gpu->GatedLinear(og.t, xg.t, *wg, bias ? bg.t : Tensor(), act, sg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt),
                    "GatedLinear " + Name(dt) + " m=" + std::to_string(m) + " f=" + std::to_string(f) +
                        " k=" + std::to_string(k) + " act " + std::to_string(static_cast<int>(act)) +
                        (bias ? " bias" : ""));
        p.cpu->Free(wc->w.data);
        p.gpu->Free(wg->w.data);
      }
    }
  }
}

// The pre-norm block ops: NormLinear / NormGatedLinear (Norm, then the GEMV or its gated form)
// and LinearResidual (residual add in the GEMV epilogue, or cuBLASLt accumulating with
// beta = 1) against the CPU's composition of the plain ops.
// One NormLinear / NormGatedLinear case on both backends: x [m, k] in [-2, 2], an RMSNorm weight
// [k], a gated weight w [2n, k] with v its first n rows, biases b [2n] / bn [n], and poisoned
// scratch h [m, k] and s [m, 2n]. The CPU side holds f32, the GPU side the pair's dtype.
struct NormLinearCase {
  std::vector<float> x, nw, w, b;
  Expected<Weight> wc, wg, vc, vg;
  Buf xc, xg, nc, ng, bc, bg, bnc, bng, hc, hg, sc, sg;

  NormLinearCase(Pair& p, DType dt, std::mt19937& g, int m, int n, int k)
      : x(RoundTo(dt, Random(g, int64_t(m) * k, -2.0f, 2.0f))),
        nw(Random(g, k, 0.5f, 1.5f)),
        w(RoundTo(dt, Random(g, int64_t(2 * n) * k, -0.1f, 0.1f))),
        b(Random(g, 2 * n)),
        wc(p.cpu->UploadWeight(w.data(), DType::kF32, 2 * n, k)),
        wg(p.gpu->UploadWeight(w.data(), DType::kF32, 2 * n, k)),
        vc(p.cpu->UploadWeight(w.data(), DType::kF32, n, k)),  // first n rows: [n, k]
        vg(p.gpu->UploadWeight(w.data(), DType::kF32, n, k)),
        xc(Upload(*p.cpu, DType::kF32, {m, k}, x)),
        xg(Upload(*p.gpu, dt, {m, k}, x)),
        nc(Upload(*p.cpu, DType::kF32, {k}, nw)),
        ng(Upload(*p.gpu, DType::kF32, {k}, nw)),
        bc(Upload(*p.cpu, DType::kF32, {2 * n}, b)),
        bg(Upload(*p.gpu, DType::kF32, {2 * n}, b)),
        bnc(Upload(*p.cpu, DType::kF32, {n}, std::vector<float>(b.begin(), b.begin() + n))),
        bng(Upload(*p.gpu, DType::kF32, {n}, std::vector<float>(b.begin(), b.begin() + n))),
        hc(Poisoned(*p.cpu, DType::kF32, {m, k})),
        hg(Poisoned(*p.gpu, dt, {m, k})),
        sc(Poisoned(*p.cpu, DType::kF32, {m, 2 * n})),
        sg(Poisoned(*p.gpu, dt, {m, 2 * n})),
        pair_(p) {}
  ~NormLinearCase() {
    for (auto* wt : {&wc, &vc})
      if (wt->ok()) pair_.cpu->Free((*wt)->w.data);
    for (auto* wt : {&wg, &vg})
      if (wt->ok()) pair_.gpu->Free((*wt)->w.data);
  }
  bool ok() const { return wc.ok() && wg.ok() && vc.ok() && vg.ok(); }

 private:
  Pair& pair_;
};

TEST(CudaOpsLinear, NormAndResidualFusionsAgainstCpu) {
  KILN_REQUIRE_CUDA();
  const FusedKernelsOn fused_on;  // opt-in kernels: on for the backends this test creates
  std::mt19937 g(16);
  const int ms[] = {1, 1, 2, 5, 9, 17, 300};
  for (DType dt : kDTypes) {
    Pair p(dt);
    int rep = 0;
    for (int m : ms) {
      for (int v = 0; v < 2; ++v, ++rep) {
        const int n = Rand(g, 1, 900), k = v == 0 ? Rand(g, 1, 64) * 8 : Rand(g, 1, 1200);
        const bool bias = rep % 3 == 1;
        const std::string what = Name(dt) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                 " k=" + std::to_string(k) + (bias ? " bias" : "");
        NormLinearCase c(p, dt, g, m, n, k);
        ASSERT_TRUE(c.ok());
        // NormLinear
        Buf oc = Poisoned(*p.cpu, DType::kF32, {m, n}), og = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->NormLinear(oc.t, c.xc.t, c.nc.t, 1e-5f, *c.vc, bias ? c.bnc.t : Tensor(), c.hc.t);
        p.gpu->NormLinear(og.t, c.xg.t, c.ng.t, 1e-5f, *c.vg, bias ? c.bng.t : Tensor(), c.hg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "NormLinear " + what);
        // NormGatedLinear
        Buf ac = Poisoned(*p.cpu, DType::kF32, {m, n}), ag = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->NormGatedLinear(ac.t, c.xc.t, c.nc.t, 1e-5f, *c.wc, bias ? c.bc.t : Tensor(), Backend::Activation::kSilu,
                               c.hc.t, c.sc.t);
        p.gpu->NormGatedLinear(ag.t, c.xg.t, c.ng.t, 1e-5f, *c.wg, bias ? c.bg.t : Tensor(), Backend::Activation::kSilu,
                               c.hg.t, c.sg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, ac.t), Read(*p.gpu, ag.t), Tol(dt), "NormGatedLinear " + what);
        // LinearResidual: residual += x @ v^T (+ bn)
        std::vector<float> res = RoundTo(dt, Random(g, int64_t(m) * n));
        std::vector<float> xin = RoundTo(dt, Random(g, int64_t(m) * k));
        Buf x2c = Upload(*p.cpu, DType::kF32, {m, k}, xin), x2g = Upload(*p.gpu, dt, {m, k}, xin);
        Buf rc = Upload(*p.cpu, DType::kF32, {m, n}, res), rg = Upload(*p.gpu, dt, {m, n}, res);
        Buf tc = Poisoned(*p.cpu, DType::kF32, {m, n}), tg = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->LinearResidual(rc.t, x2c.t, *c.vc, bias ? c.bnc.t : Tensor(), tc.t);
        p.gpu->LinearResidual(rg.t, x2g.t, *c.vg, bias ? c.bng.t : Tensor(), tg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, rc.t), Read(*p.gpu, rg.t), Tol(dt), "LinearResidual " + what);
      }
    }
  }
}

// Folded norms: the RMSNorm weight scaled into the projection's columns (ScaleWeightColumns),
// then NormLinear / NormGatedLinear with an empty norm weight (m = 1: x normalised inside the
// streaming GEMV; larger m: a unit-weight Norm, then the projection), with the gated GEMV fused
// and not, against the CPU's unfolded Norm + Linear.
TEST(CudaOpsLinear, FoldedNormWeightsAgainstCpu) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(23);
  for (bool fused_gated : {false, true}) {
    if (fused_gated) setenv("KILN_CUDA_FUSED_GATED", "1", 1);
    for (DType dt : kDTypes) {
      Pair p(dt);
      ASSERT_TRUE(p.gpu->FoldsNormWeights());
      for (int m : {1, 1, 1, 3, 40}) {
        const int n = Rand(g, 1, 700), k = m == 1 && Rand(g, 0, 2) == 0 ? Rand(g, 1, 1100) : Rand(g, 1, 600) * 8;
        const bool bias = Rand(g, 0, 1) == 1;
        const std::string what = Name(dt) + (fused_gated ? " fused gated" : "") + " m=" + std::to_string(m) +
                                 " n=" + std::to_string(n) + " k=" + std::to_string(k) + (bias ? " bias" : "");
        NormLinearCase c(p, dt, g, m, n, k);
        ASSERT_TRUE(c.ok());
        ASSERT_TRUE(p.gpu->ScaleWeightColumns(*c.wg, c.ng.t).ok());
        ASSERT_TRUE(p.gpu->ScaleWeightColumns(*c.vg, c.ng.t).ok());
        Buf oc = Poisoned(*p.cpu, DType::kF32, {m, n}), og = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->NormLinear(oc.t, c.xc.t, c.nc.t, 1e-5f, *c.vc, bias ? c.bnc.t : Tensor(), c.hc.t);
        p.gpu->NormLinear(og.t, c.xg.t, Tensor(), 1e-5f, *c.vg, bias ? c.bng.t : Tensor(), c.hg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "folded NormLinear " + what);
        Buf ac = Poisoned(*p.cpu, DType::kF32, {m, n}), ag = Poisoned(*p.gpu, dt, {m, n});
        p.cpu->NormGatedLinear(ac.t, c.xc.t, c.nc.t, 1e-5f, *c.wc, bias ? c.bc.t : Tensor(), Backend::Activation::kSilu,
                               c.hc.t, c.sc.t);
        p.gpu->NormGatedLinear(ag.t, c.xg.t, Tensor(), 1e-5f, *c.wg, bias ? c.bg.t : Tensor(),
                               Backend::Activation::kSilu, c.hg.t, c.sg.t);
        p.Sync();
        ExpectClose(Read(*p.cpu, ac.t), Read(*p.gpu, ag.t), Tol(dt), "folded NormGatedLinear " + what);
      }
    }
    unsetenv("KILN_CUDA_FUSED_GATED");
  }
}

TEST(CudaOpsElementwise, ActivationsAddSoftcap) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(6);
  const Backend::Activation acts[] = {Backend::Activation::kSilu, Backend::Activation::kGeluTanh,
                                      Backend::Activation::kGeluErf, Backend::Activation::kRelu};
  for (DType dt : kDTypes) {
    Pair p(dt);
    for (int ai = 0; ai < 4; ++ai) {
      for (int rep = 0; rep < 2; ++rep) {
        const int n = Rand(g, 1, 300), f = rep == 0 ? Rand(g, 1, 200) * 8 : Rand(g, 1, 1500);
        std::vector<float> gu = RoundTo(dt, Random(g, int64_t(n) * 2 * f, -4.0f, 4.0f));
        Buf gc = Upload(*p.cpu, DType::kF32, {n, 2 * f}, gu), gg = Upload(*p.gpu, dt, {n, 2 * f}, gu);
        Buf oc = Poisoned(*p.cpu, DType::kF32, {n, f}), og = Poisoned(*p.gpu, dt, {n, f});
        p.cpu->GatedActivation(oc.t, gc.t, acts[ai]);
        p.gpu->GatedActivation(og.t, gg.t, acts[ai]);
        p.Sync();
        ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "GatedActivation " + Name(dt) + " act " +
                                                                        std::to_string(ai) + " f=" + std::to_string(f));
        p.cpu->ActivationInPlace(gc.t, acts[ai]);
        p.gpu->ActivationInPlace(gg.t, acts[ai]);
        p.Sync();
        ExpectClose(Read(*p.cpu, gc.t), Read(*p.gpu, gg.t), Tol(dt), "ActivationInPlace " + Name(dt));
      }
    }
    const int n = Rand(g, 1, 300), d = Rand(g, 1, 3000);
    std::vector<float> a = RoundTo(dt, Random(g, int64_t(n) * d, -50, 50)), b = RoundTo(dt, Random(g, int64_t(n) * d));
    Buf ac = Upload(*p.cpu, DType::kF32, {n, d}, a), ag = Upload(*p.gpu, dt, {n, d}, a);
    Buf bc = Upload(*p.cpu, DType::kF32, {n, d}, b), bg = Upload(*p.gpu, dt, {n, d}, b);
    Buf oc = Poisoned(*p.cpu, DType::kF32, {n, d}), og = Poisoned(*p.gpu, dt, {n, d});
    p.cpu->Add(oc.t, ac.t, bc.t);
    p.gpu->Add(og.t, ag.t, bg.t);
    p.cpu->Softcap(ac.t, 30.0f);
    p.gpu->Softcap(ag.t, 30.0f);
    p.Sync();
    ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "Add " + Name(dt));
    ExpectClose(Read(*p.cpu, ac.t), Read(*p.gpu, ag.t), Tol(dt), "Softcap " + Name(dt));
  }
}

// ---- attention: a random packed batch over a randomly paged cache ----
struct BatchSpec {
  std::vector<int> ctx;    // cached tokens before this step, per sequence
  std::vector<int> q_len;  // query tokens this step, per sequence
  int block_size = 16;
};

BatchSpec RandomSpec(std::mt19937& g, bool prefill) {
  BatchSpec s;
  const int n = prefill ? Rand(g, 1, 5) : Rand(g, 1, 17);
  s.block_size = Rand(g, 0, 1) ? 16 : 32;
  for (int i = 0; i < n; ++i) {
    s.ctx.push_back(Rand(g, 0, 300));
    s.q_len.push_back(prefill ? Rand(g, 1, 100) : 1);
  }
  return s;
}

struct AttnCase {
  int hd, group, hkv;
};

// rope_form >= 0 fixes the RoPE variant to whole-head rotary with bit 0 = interleaved and bit 1 =
// q/k norm (else all are drawn at random).
void RunAttention(DType dt, const AttnCase& c, const BatchSpec& spec, std::mt19937& g, bool rope_path,
                  int rope_form = -1) {
  Pair p(dt);
  const HostBatch h = MakePagedBatch(g, spec.ctx, spec.q_len, spec.block_size);
  const int hq = c.hkv * c.group, hd = c.hd, row = (hq + 2 * c.hkv) * hd;
  const int64_t cache_elems = int64_t(h.n_blocks) * h.bs * c.hkv * hd;
  std::vector<float> qkv = RoundTo(dt, Random(g, int64_t(h.n_tokens) * row, -2.0f, 2.0f));
  std::vector<float> kc = RoundTo(dt, Random(g, cache_elems, -2.0f, 2.0f));
  std::vector<float> vc = RoundTo(dt, Random(g, cache_elems));
  DevBatch bc = UploadBatch(*p.cpu, h, h.max_len), bg = UploadBatch(*p.gpu, h, h.max_len);
  Buf qc = Upload(*p.cpu, DType::kF32, {h.n_tokens, row}, qkv), qg = Upload(*p.gpu, dt, {h.n_tokens, row}, qkv);
  const std::vector<int64_t> cshape = {h.n_blocks, h.bs, c.hkv, hd};
  Buf kcc = Upload(*p.cpu, DType::kF32, cshape, kc), kcg = Upload(*p.gpu, dt, cshape, kc);
  Buf vcc = Upload(*p.cpu, DType::kF32, cshape, vc), vcg = Upload(*p.gpu, dt, cshape, vc);
  KvCacheLayer cache_c{kcc.t, vcc.t}, cache_g{kcg.t, vcg.t};
  std::string what = Name(dt) + " hd=" + std::to_string(hd) + " hq=" + std::to_string(hq) + " hkv=" +
                     std::to_string(c.hkv) + " seqs=" + std::to_string(h.n_seqs) + " tokens=" +
                     std::to_string(h.n_tokens) + " max_len=" + std::to_string(h.max_len);

  if (rope_path) {
    RopeSpec rope;
    const int variant = rope_form >= 0 ? 0 : Rand(g, 0, 3);
    rope.rotary_dim = variant == 3 ? 0 : (variant == 2 ? std::max(2, hd / 2 / 2 * 2) : hd);
    rope.interleaved = rope_form >= 0 ? (rope_form & 1) != 0 : Rand(g, 0, 1) == 1;
    rope.attention_factor = variant == 1 ? 1.2f : 1.0f;
    std::vector<float> inv(std::max(1, rope.rotary_dim / 2));
    for (size_t i = 0; i < inv.size(); ++i) inv[i] = std::pow(10000.0f, -2.0f * i / std::max(1, rope.rotary_dim));
    Buf ic = Upload(*p.cpu, DType::kF32, {int64_t(inv.size())}, inv), ig = Upload(*p.gpu, DType::kF32, {int64_t(inv.size())}, inv);
    const bool qk_norm = rope_form >= 0 ? (rope_form & 2) != 0 : Rand(g, 0, 1) == 1;
    std::vector<float> qn = Random(g, hd, 0.5f, 1.5f), kn = Random(g, hd, 0.5f, 1.5f);
    Buf qnc = Upload(*p.cpu, DType::kF32, {hd}, qn), qng = Upload(*p.gpu, DType::kF32, {hd}, qn);
    Buf knc = Upload(*p.cpu, DType::kF32, {hd}, kn), kng = Upload(*p.gpu, DType::kF32, {hd}, kn);
    RopeSpec rc = rope, rg = rope;
    rc.inv_freq = ic.t;
    rg.inv_freq = ig.t;
    const AttentionShape shape{hq, c.hkv, hd};
    p.cpu->RopeWriteKv(qc.t, bc.b, shape, rc, qk_norm ? qnc.t : Tensor(), qk_norm ? knc.t : Tensor(), 1e-6f, cache_c);
    p.gpu->RopeWriteKv(qg.t, bg.b, shape, rg, qk_norm ? qng.t : Tensor(), qk_norm ? kng.t : Tensor(), 1e-6f, cache_g);
    p.Sync();
    what += " rotary=" + std::to_string(rope.rotary_dim) + (rope.interleaved ? " interleaved" : "") +
            (qk_norm ? " qk_norm" : "");
    ExpectClose(Read(*p.cpu, qc.t), Read(*p.gpu, qg.t), Tol(dt), "RopeWriteKv qkv " + what);
    ExpectClose(Read(*p.cpu, kcc.t), Read(*p.gpu, kcg.t), Tol(dt), "RopeWriteKv k cache " + what);
    ExpectClose(Read(*p.cpu, vcc.t), Read(*p.gpu, vcg.t), Tol(dt), "RopeWriteKv v cache " + what);
    return;
  }

  AttentionParams ap;
  ap.scale = 1.0f / std::sqrt(float(hd));
  const int variant = Rand(g, 0, 3);
  if (variant == 1) ap.sliding_window = Rand(g, 1, 120);
  if (variant == 2) ap.softcap = 5.0f;
  std::vector<float> slopes = Random(g, hq, 0.01f, 0.5f);
  Buf sc = Upload(*p.cpu, DType::kF32, {hq}, slopes), sg = Upload(*p.gpu, DType::kF32, {hq}, slopes);
  AttentionParams apc = ap, apg = ap;
  if (variant == 3) {
    apc.alibi_slopes = sc.t;
    apg.alibi_slopes = sg.t;
  }
  what += variant == 1 ? " window=" + std::to_string(ap.sliding_window) : variant == 2 ? " softcap" : variant == 3 ? " alibi" : "";
  const AttentionShape shape{hq, c.hkv, hd};
  Buf oc = Poisoned(*p.cpu, DType::kF32, {h.n_tokens, hq * hd}), og = Poisoned(*p.gpu, dt, {h.n_tokens, hq * hd});
  p.cpu->Attention(oc.t, qc.t, bc.b, shape, apc, cache_c);
  p.gpu->Attention(og.t, qg.t, bg.b, shape, apg, cache_g);
  p.Sync();
  ExpectClose(Read(*p.cpu, oc.t), Read(*p.gpu, og.t), Tol(dt), "Attention " + what);
}

const int kHeadDims[] = {8, 16, 64, 80, 96, 128, 256};
const int kGroups[] = {1, 4, 8};

TEST(CudaOpsRope, RopeNormWriteKvAllVariants) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(7);
  for (DType dt : {DType::kF32, DType::kBF16})
    for (int hd : kHeadDims)
      for (int grp : kGroups) RunAttention(dt, {hd, grp, Rand(g, 1, 2)}, RandomSpec(g, Rand(g, 0, 1)), g, true);
  // Many tokens at once: the kernel's one-block-per-token layout (prefill).
  for (DType dt : {DType::kF32, DType::kBF16}) {
    BatchSpec s;
    s.block_size = 16;
    s.ctx = {0, 5};
    s.q_len = {300, 40};
    for (int hd : {64, 128, 80}) RunAttention(dt, {hd, 4, 2}, s, g, true);
    // Whole-head rotary, both pairings, with and without q/k norm: over 340 tokens (the register
    // path, where a head is 32 vectors of 4-16 bytes) and over a decode batch (the general path).
    for (int form = 0; form < 4; ++form)
      for (int hd : {64, 128, 256}) {
        RunAttention(dt, {hd, 4, 2}, s, g, true, form);
        RunAttention(dt, {hd, 8, 1}, RandomSpec(g, false), g, true, form);
      }
  }
}

TEST(CudaOpsAttention, DecodeBatches) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(8);
  for (DType dt : {DType::kF32, DType::kBF16})
    for (int hd : kHeadDims)
      for (int grp : kGroups) RunAttention(dt, {hd, grp, Rand(g, 1, 2)}, RandomSpec(g, false), g, false);
}

TEST(CudaOpsAttention, PrefillAndMixedBatches) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(9);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (int hd : kHeadDims)
      for (int grp : kGroups) {
        BatchSpec s = RandomSpec(g, true);
        s.ctx.push_back(Rand(g, 0, 50));  // one decode sequence mixed in
        s.q_len.push_back(1);
        RunAttention(dt, {hd, grp, Rand(g, 1, 2)}, s, g, false);
      }
}

TEST(CudaOpsAttention, LongPrefillSplitKPathToo) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(10);
  for (int forced_split_k = 0; forced_split_k < 2; ++forced_split_k) {
    if (forced_split_k) setenv("KILN_CUDA_PREFILL_ATTN", "0", 1);
    for (DType dt : {DType::kF32, DType::kBF16}) {
      BatchSpec s;
      s.ctx = {0, 17};
      s.q_len = {300, 211};
      RunAttention(dt, {128, 4, 2}, s, g, false);
      RunAttention(dt, {64, 1, 3}, s, g, false);
    }
    unsetenv("KILN_CUDA_PREFILL_ATTN");
  }
}

}  // namespace
}  // namespace kiln
