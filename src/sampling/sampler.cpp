// The host sampling chain. Each step, in this order (the CUDA backend mirrors it):
//   1. penalties (penalties.h) on the raw logits, in place;
//   2. NaN -> -inf, in place; the max m and the argmax (lowest id on ties) are taken here;
//      every logit -inf (or an empty vocab) -> token 0; temperature 0 -> the argmax;
//   3. weights w_i = expf((l_i - m) / T) (so the max token weighs exactly 1 and nothing
//      overflows for small T); if some logit is +inf, w = 1 for the +inf ids and 0 elsewhere;
//   4. top-k: the k best ids by (logit desc, id asc), by partial selection (select.h);
//   5. top-p: over the candidates in (logit desc, id asc) order, keep the smallest prefix whose
//      weight sum (double) >= top_p * (sum of w over the candidates), at least one; with top-k
//      the k are sorted and walked, without it a radix pass on the weights and a bisection
//      over one bucket find the prefix (select.h); sums differ from best-first only by rounding;
//   6. min-p: drop ids with w < min_p (w of the max token is 1, so this is prob < min_p * max);
//   7. draw: u = UniformDraw(seed, step); walk the kept ids in ascending id order summing w in
//      double and return the first id whose running sum exceeds u * total.
#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "sampling/penalties.h"
#include "sampling/rng.h"
#include "sampling/select.h"

namespace kiln {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// What survives the chain: ids (ascending) with unnormalised weights; or one forced token.
struct Kept {
  int32_t single = -1;         // >= 0: the chain collapsed to this token (greedy, all -inf)
  bool dense = false;          // weights cover the whole vocab, ids unused
  std::vector<int32_t> ids;    // [n_kept] ascending (sparse only)
  std::vector<float> weights;  // [vocab] when dense, else [n_kept] parallel to ids
};

std::string Num(float v) { return std::to_string(v); }

class Chain {
 public:
  Chain(const SamplingParams& p, std::span<float> logits) : p_(p), logits_(logits) {}

  Kept Run(std::span<const int32_t> prompt, std::span<const int32_t> generated) {
    Kept kept;
    if (logits_.empty()) {
      kept.single = 0;
      return kept;
    }
    if (std::isfinite(p_.repetition_penalty) && p_.repetition_penalty > 0.0f) {
      ApplyRepetitionPenalty(logits_, prompt, generated, p_.repetition_penalty);
    }
    ApplyPresenceFrequencyPenalty(logits_, generated, p_.presence_penalty, p_.frequency_penalty);
    int32_t argmax = 0;
    for (size_t i = 0; i < logits_.size(); ++i) {
      float& l = logits_[i];
      if (std::isnan(l)) l = -kInf;
      if (l > max_) {
        max_ = l;
        argmax = static_cast<int32_t>(i);
      }
    }
    if (max_ == -kInf) {
      kept.single = 0;
      return kept;
    }
    // !(T > 0) also routes an unvalidated NaN or negative temperature to greedy.
    if (!(p_.temperature > 0.0f)) {
      kept.single = argmax;
      return kept;
    }
    const size_t vocab = logits_.size();
    const bool top_p_on = p_.top_p < 1.0f;  // false for NaN: off
    if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < vocab) {
      std::vector<Candidate> cands = SelectTopK(logits_, static_cast<size_t>(p_.top_k));  // best first
      std::vector<float> w(cands.size());  // [top_k] parallel to cands
      double total = 0.0;
      for (size_t i = 0; i < cands.size(); ++i) total += w[i] = Weight(cands[i].logit);
      size_t n = cands.size();
      if (top_p_on) {
        const double target = static_cast<double>(p_.top_p) * total;
        double cum = 0.0;
        for (size_t i = 0; i < n; ++i) {
          cum += w[i];
          if (cum >= target) {
            n = i + 1;
            break;
          }
        }
      }
      cands.resize(n);
      w.resize(n);
      return Finish(cands, w);
    }
    std::vector<float> w(vocab);  // [vocab]
    double total = 0.0;
    for (size_t i = 0; i < vocab; ++i) total += w[i] = Weight(logits_[i]);
    if (top_p_on) {
      // Weights are a non-decreasing function of the logits (expf is monotone), as required.
      const std::vector<Candidate> cands = TopPNucleus(logits_, w, static_cast<double>(p_.top_p) * total);
      std::vector<float> wk(cands.size());  // [n] parallel to cands
      for (size_t i = 0; i < cands.size(); ++i) wk[i] = w[cands[i].id];
      return Finish(cands, wk);
    }
    // No truncation but min-p: filter in place, dense.
    const float min_p = MinP();
    if (min_p > 0.0f) {
      for (float& x : w) x = x >= min_p ? x : 0.0f;
    }
    kept.dense = true;
    kept.weights = std::move(w);
    return kept;
  }

 private:
  float Weight(float l) const {
    if (max_ == kInf) return l == kInf ? 1.0f : 0.0f;
    if (l == -kInf) return 0.0f;
    return std::exp((l - max_) / p_.temperature);
  }

  // Clamped so that the max token (weight exactly 1) always survives min-p.
  float MinP() const { return p_.min_p > 0.0f ? std::min(p_.min_p, 1.0f) : 0.0f; }

  // Applies min-p to the truncated candidates and returns them in ascending id order: sorted
  // when few, scattered into a dense [vocab] array when many (no big sort). The max token is
  // among them with weight 1, so at least one survives.
  Kept Finish(std::span<const Candidate> cands, std::span<const float> w) const {
    const float min_p = MinP();
    auto keep = [&](size_t i) { return w[i] > 0.0f && w[i] >= min_p; };
    Kept kept;
    if (cands.size() * 16 > logits_.size()) {
      kept.dense = true;
      kept.weights.assign(logits_.size(), 0.0f);
      for (size_t i = 0; i < cands.size(); ++i) {
        if (keep(i)) kept.weights[cands[i].id] = w[i];
      }
      return kept;
    }
    std::vector<std::pair<int32_t, float>> pairs;  // (id, weight)
    pairs.reserve(cands.size());
    for (size_t i = 0; i < cands.size(); ++i) {
      if (keep(i)) pairs.emplace_back(cands[i].id, w[i]);
    }
    std::sort(pairs.begin(), pairs.end());
    kept.ids.resize(pairs.size());
    kept.weights.resize(pairs.size());
    for (size_t i = 0; i < pairs.size(); ++i) {
      kept.ids[i] = pairs[i].first;
      kept.weights[i] = pairs[i].second;
    }
    return kept;
  }

  const SamplingParams& p_;
  std::span<float> logits_;
  float max_ = -kInf;
};

// Inverse CDF over the kept ids in ascending id order, summing in double.
int32_t Draw(const Kept& kept, float u) {
  if (kept.single >= 0) return kept.single;
  const std::vector<float>& w = kept.weights;
  auto id_at = [&](size_t i) { return kept.dense ? static_cast<int32_t>(i) : kept.ids[i]; };
  double total = 0.0;
  for (float x : w) total += x;
  const double target = static_cast<double>(u) * total;
  double cum = 0.0;
  int32_t last = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0.0f) continue;
    cum += w[i];
    last = id_at(i);
    if (cum > target) return last;
  }
  return last;  // unreachable while u < 1; kept for rounding safety
}

}  // namespace

Status SamplingParams::Validate() const {
  if (std::isnan(temperature) || temperature < 0.0f || !std::isfinite(temperature)) {
    return InvalidArgument("SamplingParams.temperature must be a finite number >= 0 (0 = greedy), got " +
                           Num(temperature));
  }
  if (top_k < 0) {
    return InvalidArgument("SamplingParams.top_k must be >= 0 (0 = off), got " + std::to_string(top_k));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return InvalidArgument("SamplingParams.top_p must be in (0, 1], got " + Num(top_p));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return InvalidArgument("SamplingParams.min_p must be in [0, 1], got " + Num(min_p));
  }
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return InvalidArgument("SamplingParams.repetition_penalty must be a finite number > 0, got " +
                           Num(repetition_penalty));
  }
  if (!std::isfinite(presence_penalty)) {
    return InvalidArgument("SamplingParams.presence_penalty must be finite, got " + Num(presence_penalty));
  }
  if (!std::isfinite(frequency_penalty)) {
    return InvalidArgument("SamplingParams.frequency_penalty must be finite, got " + Num(frequency_penalty));
  }
  return Status::Ok();
}

bool IsPlainGreedy(const SamplingParams& p, bool wants_logprobs) {
  return p.temperature == 0.0f && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && !wants_logprobs;
}

float UniformDraw(uint64_t seed, uint64_t counter) { return rng::BitsToUnit(rng::DrawBits(seed, counter)); }

Sampler::Sampler(const SamplingParams& params) : params_(params) {}

int32_t Sampler::Sample(std::span<float> logits, std::span<const int32_t> prompt,
                        std::span<const int32_t> generated, uint64_t step) const {
  const Kept kept = Chain(params_, logits).Run(prompt, generated);
  if (kept.single >= 0) return kept.single;  // no draw consumed: the stream stays step-indexed
  return Draw(kept, UniformDraw(params_.seed, step));
}

std::vector<float> Sampler::Probabilities(std::span<float> logits, std::span<const int32_t> prompt,
                                          std::span<const int32_t> generated) const {
  std::vector<float> probs(logits.size(), 0.0f);  // [vocab]
  const Kept kept = Chain(params_, logits).Run(prompt, generated);
  if (kept.single >= 0) {
    if (!probs.empty()) probs[kept.single] = 1.0f;
    return probs;
  }
  double total = 0.0;
  for (float x : kept.weights) total += x;
  for (size_t i = 0; i < kept.weights.size(); ++i) {
    probs[kept.dense ? i : static_cast<size_t>(kept.ids[i])] = static_cast<float>(kept.weights[i] / total);
  }
  return probs;
}

void LogSoftmax(std::span<const float> logits, std::span<float> out) {
  const size_t n = std::min(logits.size(), out.size());
  if (n == 0) return;
  float m = -kInf;
  size_t n_pos_inf = 0;
  for (size_t i = 0; i < n; ++i) {
    if (logits[i] > m) m = logits[i];  // NaN never compares greater
    if (logits[i] == kInf) ++n_pos_inf;
  }
  if (m == -kInf) {  // nothing finite: all mass on token 0, as in the sampler
    std::fill(out.begin(), out.begin() + n, -kInf);
    out[0] = 0.0f;
    return;
  }
  if (m == kInf) {  // uniform over the +inf ids
    const float lp = -static_cast<float>(std::log(static_cast<double>(n_pos_inf)));
    for (size_t i = 0; i < n; ++i) out[i] = logits[i] == kInf ? lp : -kInf;
    return;
  }
  // log sum exp(l - m) in double; the max term contributes exactly 1, so the log is >= 0.
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isnan(logits[i])) sum += std::exp(static_cast<double>(logits[i]) - m);
  }
  const double lse = std::log(sum);
  for (size_t i = 0; i < n; ++i) {
    const float l = logits[i];
    out[i] = std::isnan(l) ? -kInf : static_cast<float>(static_cast<double>(l) - m - lse);
  }
}

}  // namespace kiln
