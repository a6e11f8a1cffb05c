// Tests for the host sampling chain (src/sampling): RNG stream, filters, distribution,
// penalties, greedy, validation and non-finite logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "sampling/rng.h"
#include "sampling/sampler.h"
#include "sampling/select.h"

namespace kiln {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> RandomLogits(std::mt19937& gen, size_t vocab, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> l(vocab);
  for (float& x : l) x = dist(gen);
  return l;
}

// Ids sorted by (logit desc, id asc): the chain's candidate order.
std::vector<int32_t> SortedIds(const std::vector<float>& logits) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return ids;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - m) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

// Brute-force reference of the kept set: full sort, then top-k, top-p, min-p.
std::set<int32_t> ReferenceSet(const std::vector<float>& logits, const SamplingParams& sp) {
  std::vector<double> p = Softmax(logits, sp.temperature);
  std::vector<int32_t> ids = SortedIds(logits);
  size_t n = ids.size();
  if (sp.top_k > 0) n = std::min(n, static_cast<size_t>(sp.top_k));
  if (sp.top_p < 1.0f) {
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += p[ids[i]];
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += p[ids[i]] / total;
      if (cum >= sp.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  std::set<int32_t> out;
  const double max_p = p[ids[0]];
  for (size_t i = 0; i < n; ++i) {
    if (p[ids[i]] >= sp.min_p * max_p) out.insert(ids[i]);
  }
  return out;
}

// Draws `n` tokens (steps 0..n-1) from a fresh copy of `logits` each time.
std::vector<int32_t> Draws(const Sampler& s, const std::vector<float>& logits, uint64_t n,
                           uint64_t first_step = 0) {
  std::vector<int32_t> out;
  out.reserve(n);
  for (uint64_t step = first_step; step < first_step + n; ++step) {
    std::vector<float> l = logits;
    out.push_back(s.Sample(l, {}, {}, step));
  }
  return out;
}

// ---- RNG ----

TEST(SamplingRng, UniformDrawGoldenValues) {
  // Independently computed (Python) from the splitmix64 formula documented in rng.h; the CUDA
  // backend must reproduce these bit for bit.
  struct Case {
    uint64_t seed, counter;
    uint32_t bits;
  };
  const Case cases[] = {{0, 0, 10946269u},
                        {0, 1, 570621u},
                        {1, 0, 6177195u},
                        {42, 7, 1443373u},
                        {0xDEADBEEFCAFEF00Dull, 123456789ull, 15242617u},
                        {~0ull, ~0ull, 6490388u}};
  for (const Case& c : cases) {
    EXPECT_EQ(rng::DrawBits(c.seed, c.counter), c.bits) << c.seed << "/" << c.counter;
    EXPECT_EQ(UniformDraw(c.seed, c.counter), static_cast<float>(c.bits) / 16777216.0f);
  }
}

TEST(SamplingRng, UniformDrawInUnitIntervalWithMeanHalf) {
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = UniformDraw(7, i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  // Std error of the mean is 1/sqrt(12 n) ~ 0.0009; 0.005 is > 5 sigma.
  EXPECT_NEAR(sum / n, 0.5, 0.005);
}

// ---- reproducibility ----

TEST(SamplingReproducible, FixedSeedReproducesTokens) {
  std::mt19937 gen(1);
  const std::vector<float> logits = RandomLogits(gen, 5000, 2.0f);
  SamplingParams sp;
  sp.seed = 1234;
  sp.top_k = 100;
  sp.top_p = 0.95f;
  const std::vector<int32_t> a = Draws(Sampler(sp), logits, 300);
  const std::vector<int32_t> b = Draws(Sampler(sp), logits, 300);
  EXPECT_EQ(a, b);
  // Draw n depends on (seed, n) only, not on what was drawn before.
  const std::vector<int32_t> tail = Draws(Sampler(sp), logits, 100, 200);
  EXPECT_EQ(std::vector<int32_t>(a.begin() + 200, a.end()), tail);
}

TEST(SamplingReproducible, GoldenTokensOnUniformVocab) {
  // With 8 equal logits every weight is exactly 1, so the token is floor(8 u): fixed across
  // runs, processes, libm versions and the GPU. Expected = golden bits >> 21.
  SamplingParams sp;
  sp.seed = 0;
  const std::vector<float> logits(8, 0.0f);
  const std::vector<int32_t> got = Draws(Sampler(sp), logits, 2);
  EXPECT_EQ(got[0], static_cast<int32_t>(10946269u >> 21));  // 5
  EXPECT_EQ(got[1], static_cast<int32_t>(570621u >> 21));    // 0
}

TEST(SamplingReproducible, DifferentSeedsDiffer) {
  const std::vector<float> logits(1000, 0.0f);
  SamplingParams a, b;
  a.seed = 1;
  b.seed = 2;
  const std::vector<int32_t> ta = Draws(Sampler(a), logits, 200);
  const std::vector<int32_t> tb = Draws(Sampler(b), logits, 200);
  int differ = 0;
  for (size_t i = 0; i < ta.size(); ++i) differ += ta[i] != tb[i];
  EXPECT_GE(differ, 190);  // expected 199.8 of 200 for independent uniform streams
  // Within one stream, steps are not stuck on one token.
  EXPECT_GE(std::set<int32_t>(ta.begin(), ta.end()).size(), 150u);
}

// ---- filters: randomized membership ----

struct FilterCase {
  const char* name;
  int top_k_max;
  bool top_p;
  bool min_p;
};

void CheckFilterMembership(const FilterCase& fc, uint32_t gen_seed) {
  std::mt19937 gen(gen_seed);
  std::uniform_int_distribution<int> vocab_dist(20, 3000);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  int64_t draws = 0;
  for (int trial = 0; trial < 25; ++trial) {
    const size_t vocab = vocab_dist(gen);
    const std::vector<float> logits = RandomLogits(gen, vocab, 0.5f + 3.0f * unit(gen));
    SamplingParams sp;
    sp.seed = gen();
    sp.temperature = 0.3f + 1.5f * unit(gen);
    if (fc.top_k_max > 0) sp.top_k = 1 + static_cast<int>(gen() % fc.top_k_max);
    if (fc.top_p) sp.top_p = 0.05f + 0.9f * unit(gen);
    if (fc.min_p) sp.min_p = 0.01f + 0.5f * unit(gen);
    ASSERT_TRUE(sp.Validate().ok());
    const std::set<int32_t> ref = ReferenceSet(logits, sp);
    const Sampler s(sp);

    std::vector<float> l = logits;
    const std::vector<float> probs = s.Probabilities(l, {}, {});
    const std::vector<double> full = Softmax(logits, sp.temperature);
    double ref_mass = 0;
    for (int32_t id : ref) ref_mass += full[id];
    double sum = 0;
    for (size_t i = 0; i < vocab; ++i) {
      sum += probs[i];
      const double want = ref.count(static_cast<int32_t>(i)) ? full[i] / ref_mass : 0.0;
      if (want == 0.0) {
        ASSERT_EQ(probs[i], 0.0f) << fc.name << " trial " << trial << " id " << i;
      } else {
        ASSERT_NEAR(probs[i], want, 1e-5 + 1e-4 * want) << fc.name << " trial " << trial << " id " << i;
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << fc.name;
    for (int32_t tok : Draws(s, logits, 200)) {
      ASSERT_TRUE(ref.count(tok)) << fc.name << " trial " << trial << " emitted " << tok;
      ++draws;
    }
  }
  EXPECT_EQ(draws, 25 * 200);
}

TEST(SamplingFilters, TopKNeverEmitsOutsideSet) { CheckFilterMembership({"top_k", 40, false, false}, 11); }
TEST(SamplingFilters, TopPNeverEmitsOutsideSet) { CheckFilterMembership({"top_p", 0, true, false}, 12); }
TEST(SamplingFilters, MinPNeverEmitsOutsideSet) { CheckFilterMembership({"min_p", 0, false, true}, 13); }
TEST(SamplingFilters, CombinedNeverEmitOutsideSet) {
  CheckFilterMembership({"top_k+top_p+min_p", 200, true, true}, 14);
}

TEST(SamplingFilters, TopKTiesKeepLowestIds) {
  SamplingParams sp;
  sp.top_k = 2;
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 3.0f, 0.0f};
  for (int32_t tok : Draws(Sampler(sp), logits, 500)) ASSERT_TRUE(tok == 1 || tok == 2) << tok;
}

TEST(SamplingFilters, TopPKeepsSmallestPrefixAndAtLeastOne) {
  // probs 0.5, 0.25, 0.125, 0.125 (logits are logs). p = 0.7 -> {0, 1}; p = 0.75 -> {0, 1}
  // (mass reached exactly); p = 0.1 -> {0} alone.
  const std::vector<float> logits = {std::log(4.0f), std::log(2.0f), 0.0f, 0.0f};
  for (float p : {0.7f, 0.75f, 0.1f}) {
    SamplingParams sp;
    sp.top_p = p;
    std::vector<float> l = logits;
    const std::vector<float> probs = Sampler(sp).Probabilities(l, {}, {});
    if (p == 0.1f) {
      EXPECT_EQ(probs, (std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f}));
    } else {
      EXPECT_NEAR(probs[0], 2.0f / 3.0f, 1e-6) << p;
      EXPECT_NEAR(probs[1], 1.0f / 3.0f, 1e-6) << p;
      EXPECT_EQ(probs[2], 0.0f) << p;
      EXPECT_EQ(probs[3], 0.0f) << p;
    }
  }
}

TEST(SamplingFilters, TopPBoundaryIsInclusive) {
  // Equal logits weigh exactly 1 each: p = 0.5 of 4 tokens is reached exactly by 2 of them.
  for (int32_t top_k : {0, 4}) {  // dense path and the top-k path (top_k < vocab)
    SamplingParams sp;
    sp.top_p = 0.5f;
    sp.top_k = top_k;
    std::vector<float> l = {0.0f, 0.0f, 0.0f, 0.0f, -kInf};
    EXPECT_EQ(Sampler(sp).Probabilities(l, {}, {}), (std::vector<float>{0.5f, 0.5f, 0.0f, 0.0f, 0.0f}))
        << top_k;
  }
}

TEST(SamplingFilters, MinPDropsBelowFractionOfMax) {
  // probs proportional to 8, 4, 2, 1: min_p 0.25 keeps 8, 4, 2 (2 >= 0.25 * 8).
  for (int32_t top_k : {0, 4}) {
    SamplingParams sp;
    sp.min_p = 0.25f;
    sp.top_k = top_k;
    std::vector<float> l = {std::log(8.0f), std::log(4.0f), std::log(2.0f), 0.0f, -kInf};
    const std::vector<float> probs = Sampler(sp).Probabilities(l, {}, {});
    EXPECT_NEAR(probs[0], 8.0f / 14.0f, 1e-6) << top_k;
    EXPECT_NEAR(probs[1], 4.0f / 14.0f, 1e-6) << top_k;
    EXPECT_NEAR(probs[2], 2.0f / 14.0f, 1e-6) << top_k;
    EXPECT_EQ(probs[3], 0.0f) << top_k;
  }
}

TEST(SamplingFilters, LargeVocabTopKTopP) {
  std::mt19937 gen(21);
  const std::vector<float> logits = RandomLogits(gen, 256000, 3.0f);
  SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 50;
  sp.top_p = 0.9f;
  sp.seed = 99;
  const std::set<int32_t> ref = ReferenceSet(logits, sp);
  ASSERT_LE(ref.size(), 50u);
  for (int32_t tok : Draws(Sampler(sp), logits, 200)) ASSERT_TRUE(ref.count(tok)) << tok;
}

TEST(SamplingFilters, LargeVocabTopPOnlyWideNucleus) {
  // A flat distribution over 128k ids: the top-p prefix (~115k ids) spans many radix buckets
  // and the crossing bucket is large enough to need bisection rounds.
  std::mt19937 gen(22);
  const std::vector<float> logits = RandomLogits(gen, 128000, 0.1f);
  SamplingParams sp;
  sp.top_p = 0.9f;
  sp.seed = 5;
  const std::set<int32_t> ref = ReferenceSet(logits, sp);
  ASSERT_GT(ref.size(), 100000u);
  std::vector<float> l = logits;
  const std::vector<float> probs = Sampler(sp).Probabilities(l, {}, {});
  size_t nonzero = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] > 0) {
      ++nonzero;
      ASSERT_TRUE(ref.count(static_cast<int32_t>(i))) << i;
    }
  }
  // The set may differ by a boundary token at most (float vs double weights).
  EXPECT_NEAR(static_cast<double>(nonzero), static_cast<double>(ref.size()), 1.0);
  for (int32_t tok : Draws(Sampler(sp), logits, 100)) ASSERT_TRUE(ref.count(tok)) << tok;
}

// ---- partial selection ----

TEST(SamplingSelect, TopKMatchesFullSort) {
  std::mt19937 gen(51);
  for (int trial = 0; trial < 60; ++trial) {
    const size_t vocab = 1 + gen() % 20000;
    std::vector<float> logits = RandomLogits(gen, vocab, 2.0f);
    const int mode = trial % 4;
    if (mode == 1) std::sort(logits.begin(), logits.end());  // ascending: every id enters the buffer
    if (mode == 2) {
      for (float& x : logits) x = std::round(x);  // heavy ties
    }
    if (mode == 3) {
      for (size_t i = 0; i < vocab; i += 3) logits[i] = -kInf;
    }
    const size_t k = 1 + gen() % (trial % 2 ? 3000 : 60);
    const std::vector<Candidate> got = SelectTopK(logits, k);
    std::vector<int32_t> ref = SortedIds(logits);
    while (!ref.empty() && logits[ref.back()] == -kInf) ref.pop_back();
    ref.resize(std::min(ref.size(), k));
    ASSERT_EQ(got.size(), ref.size()) << trial;
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_EQ(got[i].id, ref[i]) << "trial " << trial << " rank " << i;
  }
}

TEST(SamplingSelect, TopPPrefixMatchesSortedWalk) {
  std::mt19937 gen(52);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t vocab = 1 + gen() % 30000;
    std::vector<float> logits = RandomLogits(gen, vocab, trial % 2 ? 0.2f : 3.0f);
    if (trial % 5 == 0) {
      for (float& x : logits) x = std::round(x);
    }
    const float m = *std::max_element(logits.begin(), logits.end());
    std::vector<float> w(vocab);
    double total = 0;
    for (size_t i = 0; i < vocab; ++i) total += w[i] = std::exp(logits[i] - m);
    const double target = unit(gen) * total;
    // Reference: walk the fully sorted order.
    const std::vector<int32_t> order = SortedIds(logits);
    size_t ref_n = order.size();
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += w[order[i]];
      if (cum >= target) {
        ref_n = i + 1;
        break;
      }
    }
    std::vector<Candidate> cands(vocab);
    for (size_t i = 0; i < vocab; ++i) cands[i] = {logits[i], static_cast<int32_t>(i)};
    const size_t n = PartitionTopP(cands, w, target);
    // Summation order differs from the reference only by rounding: allow one boundary token.
    ASSERT_LE(n > ref_n ? n - ref_n : ref_n - n, 1u) << trial;
    std::set<int32_t> got;
    for (size_t i = 0; i < n; ++i) got.insert(cands[i].id);
    for (size_t i = 0; i < std::min(n, ref_n); ++i) ASSERT_TRUE(got.count(order[i])) << trial << " " << i;
  }
}

TEST(SamplingSelect, TopPNucleusMatchesSortedWalk) {
  std::mt19937 gen(53);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t vocab = 1 + gen() % 50000;
    std::vector<float> logits = RandomLogits(gen, vocab, trial % 2 ? 0.05f : 4.0f);
    if (trial % 5 == 0) {
      for (float& x : logits) x = std::round(x);  // ties across and within buckets
    }
    if (trial % 7 == 0) {
      for (size_t i = 0; i < vocab; i += 2) logits[i] = -kInf;  // excluded: weight 0
    }
    const float m = *std::max_element(logits.begin(), logits.end());
    std::vector<float> w(vocab);
    double total = 0;
    for (size_t i = 0; i < vocab; ++i) total += w[i] = logits[i] == -kInf ? 0.0f : std::exp(logits[i] - m);
    const double target = (0.02 + 0.97 * unit(gen)) * total;
    const std::vector<int32_t> order = SortedIds(logits);
    size_t ref_n = order.size();
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += w[order[i]];
      if (cum >= target) {
        ref_n = i + 1;
        break;
      }
    }
    const std::vector<Candidate> got = TopPNucleus(logits, w, target);
    ASSERT_LE(got.size() > ref_n ? got.size() - ref_n : ref_n - got.size(), 1u) << trial;
    std::set<int32_t> ids;
    for (const Candidate& c : got) ids.insert(c.id);
    ASSERT_EQ(ids.size(), got.size()) << trial;
    for (size_t i = 0; i < std::min(got.size(), ref_n); ++i)
      ASSERT_TRUE(ids.count(order[i])) << trial << " " << i;
  }
}

// ---- distribution ----

// Pearson chi-square of `n` draws against `probs`.
double ChiSquare(const std::vector<int32_t>& tokens, const std::vector<double>& probs) {
  std::vector<double> counts(probs.size(), 0.0);
  for (int32_t t : tokens) counts.at(t) += 1;
  double chi2 = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double e = probs[i] * tokens.size();
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

TEST(SamplingDistribution, TemperatureOneFollowsSoftmaxChiSquare) {
  // 10 tokens, smallest expected count ~62; df = 9. Critical value of chi-square(9) at
  // alpha = 0.001 is 27.877. The seed is fixed, so the outcome is deterministic.
  const std::vector<float> logits = {-1.0f, 0.0f, 0.5f, 1.0f, 1.5f, -0.5f, 0.25f, 2.0f, -2.0f, 0.75f};
  SamplingParams sp;
  sp.seed = 20261125;
  const std::vector<int32_t> tokens = Draws(Sampler(sp), logits, 10000);
  const double chi2 = ChiSquare(tokens, Softmax(logits, 1.0));
  std::printf("chi-square = %.3f (df 9, critical 27.877)\n", chi2);
  EXPECT_LT(chi2, 27.877);
  // Power check: the same draws are rejected against the softmax at temperature 1.5.
  EXPECT_GT(ChiSquare(tokens, Softmax(logits, 1.5)), 27.877);
}

TEST(SamplingDistribution, TemperatureAndTopKFollowRenormalisedSoftmax) {
  // temperature 0.7, top_k 5: the 5 best of 10 renormalised; df = 4, critical value 18.467
  // (alpha = 0.001).
  const std::vector<float> logits = {-1.0f, 0.0f, 0.5f, 1.0f, 1.5f, -0.5f, 0.25f, 2.0f, -2.0f, 0.75f};
  SamplingParams sp;
  sp.seed = 777;
  sp.temperature = 0.7f;
  sp.top_k = 5;
  const std::vector<int32_t> tokens = Draws(Sampler(sp), logits, 10000);
  const std::vector<int32_t> kept = {2, 3, 4, 7, 9};
  std::vector<float> sub;
  for (int32_t id : kept) sub.push_back(logits[id]);
  const std::vector<double> p = Softmax(sub, 0.7);
  std::vector<int32_t> mapped;
  for (int32_t t : tokens) {
    auto it = std::find(kept.begin(), kept.end(), t);
    ASSERT_NE(it, kept.end()) << t;
    mapped.push_back(static_cast<int32_t>(it - kept.begin()));
  }
  const double chi2 = ChiSquare(mapped, p);
  std::printf("chi-square = %.3f (df 4, critical 18.467)\n", chi2);
  EXPECT_LT(chi2, 18.467);
}

// ---- penalties ----

TEST(SamplingPenalties, RepetitionMatchesHfExample) {
  // HF RepetitionPenaltyLogitsProcessor with penalty 2 over {prompt} U {generated} = {0, 1, 4}
  // (1 appears twice, penalised once): 2 -> 1, -1 -> -2, -2 -> -4; 0.5, 3, 1 untouched.
  SamplingParams sp;
  sp.repetition_penalty = 2.0f;
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  const std::vector<int32_t> prompt = {0, 1, 1};
  const std::vector<int32_t> generated = {4, 0};
  const std::vector<float> probs = Sampler(sp).Probabilities(l, prompt, generated);
  const std::vector<float> expected = {1.0f, -2.0f, 0.5f, 3.0f, -4.0f, 1.0f};
  EXPECT_EQ(l, expected);  // logits are penalised in place
  const std::vector<double> ref = Softmax(expected, 1.0);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(probs[i], ref[i], 1e-6) << i;

  // Greedy flips: 3 / 2 = 1.5 < 2.
  SamplingParams g = sp;
  g.temperature = 0.0f;
  std::vector<float> l2 = {3.0f, 2.0f};
  EXPECT_EQ(Sampler(g).Sample(l2, std::vector<int32_t>{0}, {}, 0), 1);
  // Penalty < 1 encourages: 3 / 0.5 = 6 > 5.
  g.repetition_penalty = 0.5f;
  std::vector<float> l3 = {5.0f, 3.0f};
  EXPECT_EQ(Sampler(g).Sample(l3, {}, std::vector<int32_t>{1}, 0), 1);
}

TEST(SamplingPenalties, PresenceAndFrequencyPerOpenAI) {
  // OpenAI: logit -= frequency * count + presence * (count > 0), over generated ids only.
  SamplingParams sp;
  sp.presence_penalty = 0.5f;
  sp.frequency_penalty = 0.25f;
  std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<int32_t> prompt = {4, 4};
  const std::vector<int32_t> generated = {1, 3, 1, 2, 3, 3};
  (void)Sampler(sp).Probabilities(l, prompt, generated);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 0.0f, 0.25f, -0.25f, 1.0f}));

  // Negative values encourage repetition.
  SamplingParams neg;
  neg.presence_penalty = -1.0f;
  neg.frequency_penalty = -0.5f;
  std::vector<float> l2 = {0.0f, 0.0f};
  (void)Sampler(neg).Probabilities(l2, {}, std::vector<int32_t>{1, 1});
  EXPECT_EQ(l2, (std::vector<float>{0.0f, 2.0f}));
}

TEST(SamplingPenalties, OutOfRangeHistoryIdsAreIgnored) {
  SamplingParams sp;
  sp.repetition_penalty = 1.3f;
  sp.presence_penalty = 1.0f;
  std::vector<float> l = {1.0f, 2.0f};
  const std::vector<int32_t> bad = {-7, 2, 1 << 30};
  (void)Sampler(sp).Probabilities(l, bad, bad);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 2.0f}));
}

// ---- greedy ----

TEST(SamplingGreedy, LowestIdWinsTies) {
  SamplingParams sp;
  sp.temperature = 0.0f;
  const Sampler s(sp);
  for (uint64_t step = 0; step < 20; ++step) {
    std::vector<float> l = {1.0f, 5.0f, 5.0f, 2.0f, 5.0f};
    EXPECT_EQ(s.Sample(l, {}, {}, step), 1);
  }
  std::vector<float> l = {1.0f, 5.0f, 5.0f};
  EXPECT_EQ(s.Probabilities(l, {}, {}), (std::vector<float>{0.0f, 1.0f, 0.0f}));
}

TEST(SamplingGreedy, PenaltiesStillApply) {
  SamplingParams sp;
  sp.temperature = 0.0f;
  sp.presence_penalty = 0.1f;
  std::vector<float> l = {5.0f, 5.0f, 1.0f};
  EXPECT_EQ(Sampler(sp).Sample(l, {}, std::vector<int32_t>{0}, 0), 1);
}

// ---- validation ----

TEST(SamplingValidate, AcceptsDefaultsAndEdges) {
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
  SamplingParams sp;
  sp.temperature = 0.0f;
  sp.top_p = 1.0f;
  sp.min_p = 1.0f;
  sp.top_k = 1;
  sp.presence_penalty = -2.0f;
  EXPECT_TRUE(sp.Validate().ok());
}

TEST(SamplingValidate, RejectsBadFieldsNamingThem) {
  struct Bad {
    const char* field;
    void (*set)(SamplingParams&);
  };
  const Bad cases[] = {
      {"temperature", [](SamplingParams& p) { p.temperature = kNaN; }},
      {"temperature", [](SamplingParams& p) { p.temperature = -0.5f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = kInf; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.01f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = kNaN; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.1f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = kNaN; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = -1.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = kNaN; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = kNaN; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = kInf; }},
  };
  for (const Bad& b : cases) {
    SamplingParams sp;
    b.set(sp);
    const Status st = sp.Validate();
    ASSERT_FALSE(st.ok()) << b.field;
    EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument) << b.field;
    EXPECT_NE(st.message().find(b.field), std::string::npos) << st.message();
  }
}

// ---- non-finite logits ----

TEST(SamplingNonFinite, NanIsMinusInfinity) {
  SamplingParams sp;
  sp.seed = 3;
  const std::vector<float> logits = {kNaN, -kInf, 2.0f, kNaN};
  for (int32_t tok : Draws(Sampler(sp), logits, 200)) ASSERT_EQ(tok, 2);
  sp.temperature = 0.0f;
  std::vector<float> l = {kNaN, 1.0f, kNaN};
  EXPECT_EQ(Sampler(sp).Sample(l, {}, {}, 0), 1);
}

TEST(SamplingNonFinite, AllMinusInfOrNanGivesTokenZero) {
  for (float t : {0.0f, 1.0f}) {
    SamplingParams sp;
    sp.temperature = t;
    sp.top_k = 3;
    sp.top_p = 0.5f;
    const Sampler s(sp);
    std::vector<float> a = {-kInf, -kInf, -kInf, -kInf};
    std::vector<float> b = {kNaN, kNaN, -kInf, kNaN};
    EXPECT_EQ(s.Sample(a, {}, {}, 4), 0);
    EXPECT_EQ(s.Sample(b, {}, {}, 9), 0);
    std::vector<float> c = {kNaN, -kInf};
    EXPECT_EQ(s.Probabilities(c, {}, {}), (std::vector<float>{1.0f, 0.0f}));
  }
  std::vector<float> empty;
  EXPECT_EQ(Sampler(SamplingParams{}).Sample(empty, {}, {}, 0), 0);
  EXPECT_TRUE(Sampler(SamplingParams{}).Probabilities(empty, {}, {}).empty());
}

TEST(SamplingNonFinite, PlusInfIsUniformOverInfIds) {
  SamplingParams sp;
  sp.seed = 8;
  const std::vector<float> logits = {1.0f, kInf, 3.0f, kInf, kNaN};
  std::vector<float> l = logits;
  EXPECT_EQ(Sampler(sp).Probabilities(l, {}, {}), (std::vector<float>{0.0f, 0.5f, 0.0f, 0.5f, 0.0f}));
  std::set<int32_t> seen;
  for (int32_t tok : Draws(Sampler(sp), logits, 200)) {
    ASSERT_TRUE(tok == 1 || tok == 3) << tok;
    seen.insert(tok);
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST(SamplingNonFinite, TinyTemperatureDoesNotOverflow) {
  SamplingParams sp;
  sp.temperature = 1e-30f;
  const std::vector<float> logits = {1.0f, 1.5f, -3.0f, 1.4999f};
  for (int32_t tok : Draws(Sampler(sp), logits, 100)) ASSERT_EQ(tok, 1);
}

TEST(SamplingNonFinite, SampledTokenAlwaysHasPositiveProbability) {
  // Property over random parameters, including hostile logits.
  std::mt19937 gen(31);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<float> logits = RandomLogits(gen, 1 + gen() % 300, 5.0f);
    for (float& x : logits) {
      const uint32_t r = gen() % 20;
      if (r == 0) x = kNaN;
      if (r == 1) x = -kInf;
      if (r == 2) x = 1e30f;
    }
    SamplingParams sp;
    sp.seed = gen();
    sp.temperature = unit(gen) < 0.1f ? 0.0f : 0.05f + 2.0f * unit(gen);
    sp.top_k = gen() % 3 == 0 ? 0 : 1 + gen() % 50;
    sp.top_p = gen() % 2 ? 1.0f : 0.01f + 0.99f * unit(gen);
    sp.min_p = gen() % 2 ? 0.0f : unit(gen);
    sp.repetition_penalty = 0.5f + unit(gen);
    sp.presence_penalty = unit(gen) - 0.5f;
    sp.frequency_penalty = unit(gen) - 0.5f;
    ASSERT_TRUE(sp.Validate().ok());
    std::vector<int32_t> history;
    for (int i = 0; i < 20; ++i) history.push_back(static_cast<int32_t>(gen() % logits.size()));
    const Sampler s(sp);
    std::vector<float> lp = logits;
    const std::vector<float> probs = s.Probabilities(lp, history, history);
    double sum = 0;
    for (float p : probs) {
      ASSERT_TRUE(std::isfinite(p));
      sum += p;
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << trial;
    for (uint64_t step = 0; step < 20; ++step) {
      std::vector<float> l = logits;
      const int32_t tok = s.Sample(l, history, history, step);
      ASSERT_GE(tok, 0);
      ASSERT_LT(static_cast<size_t>(tok), logits.size());
      ASSERT_GT(probs[tok], 0.0f) << "trial " << trial << " step " << step;
    }
  }
}

// ---- log-softmax ----

TEST(SamplingLogSoftmax, StableForHugeLogits) {
  const std::vector<float> logits = {1000.0f, 1000.0f, 1000.0f, -1000.0f};
  std::vector<float> out(4);
  LogSoftmax(logits, out);
  EXPECT_NEAR(out[0], -std::log(3.0), 1e-6);
  EXPECT_NEAR(out[2], -std::log(3.0), 1e-6);
  EXPECT_TRUE(std::isfinite(out[3]));
  EXPECT_NEAR(out[3], -2000.0 - std::log(3.0), 1e-3);
}

TEST(SamplingLogSoftmax, MatchesNaiveAndNormalises) {
  std::mt19937 gen(41);
  const std::vector<float> logits = RandomLogits(gen, 1000, 4.0f);
  std::vector<float> out(logits.size());
  LogSoftmax(logits, out);
  double naive_sum = 0;
  for (float l : logits) naive_sum += std::exp(static_cast<double>(l));
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(out[i], logits[i] - std::log(naive_sum), 1e-4) << i;
    total += std::exp(static_cast<double>(out[i]));
  }
  EXPECT_NEAR(total, 1.0, 1e-5);
}

TEST(SamplingLogSoftmax, NonFiniteInputs) {
  std::vector<float> out(3);
  LogSoftmax(std::vector<float>{kNaN, 0.0f, 0.0f}, out);
  EXPECT_EQ(out[0], -kInf);
  EXPECT_NEAR(out[1], -std::log(2.0), 1e-6);
  LogSoftmax(std::vector<float>{kInf, 1.0f, kInf}, out);
  EXPECT_NEAR(out[0], -std::log(2.0), 1e-6);
  EXPECT_EQ(out[1], -kInf);
  LogSoftmax(std::vector<float>{-kInf, kNaN, -kInf}, out);
  EXPECT_EQ(out, (std::vector<float>{0.0f, -kInf, -kInf}));
}

}  // namespace
}  // namespace kiln
