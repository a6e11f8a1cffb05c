// Default Backend::SampleRows: brings the logits and the packed step description to the host
// and runs the host sampling chain (src/sampling), so a backend without its own kernels (the
// CPU reference) samples exactly as the host Sampler does.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "sampling/device_row.h"
#include "sampling/sampler.h"

namespace kiln {

void Backend::SampleRows(Tensor ids, Tensor logprobs, const Tensor& logits, const DeviceSamplingBatch& batch) {
  const int64_t n = logits.rows(), V = logits.cols();
  std::vector<int32_t> out(static_cast<size_t>(n), 0);  // [n]
  std::vector<float> out_lp(static_cast<size_t>(n), 0.0f);
  std::vector<int32_t> top_ids(static_cast<size_t>(n) * kMaxDeviceTopLogprobs, 0);  // [n, kMax]
  std::vector<float> top_lp(top_ids.size(), 0.0f);
  std::vector<DeviceSamplingRow> rows(static_cast<size_t>(n));
  std::vector<DevicePenaltyEntry> pens(static_cast<size_t>(std::max(batch.n_penalties, 0)));
  std::vector<float> host(static_cast<size_t>(n * V));  // [n, V]
  bool ok = CopyToHostF32(host.data(), logits).ok() &&
            CopyToHost(rows.data(), batch.rows.data, rows.size() * sizeof(DeviceSamplingRow)).ok() &&
            (pens.empty() || CopyToHost(pens.data(), batch.penalties.data, pens.size() * sizeof(DevicePenaltyEntry)).ok());
  if (ok) {
#pragma omp parallel for schedule(dynamic) if (n > 1 && n * V >= (int64_t{1} << 20))
    for (int64_t r = 0; r < n; ++r) {
      const DeviceSamplingRow& p = rows[r];
      std::span<float> row(host.data() + r * V, static_cast<size_t>(V));
      // The history, rebuilt from the distinct-token entries: the repetition penalty sees the
      // set, presence/frequency the counts, so the chain gives the same logits.
      std::vector<int32_t> prompt, generated;
      for (int32_t i = std::max(p.penalty_begin, 0); i < std::min<int32_t>(p.penalty_end, batch.n_penalties); ++i) {
        const DevicePenaltyEntry& e = pens[i];
        if (e.in_prompt) prompt.push_back(e.token);
        generated.insert(generated.end(), static_cast<size_t>(std::max(e.count, 0)), e.token);
      }
      std::vector<float> lp;
      if (p.want_logprob || p.n_top_logprobs > 0) {
        lp.resize(static_cast<size_t>(V));
        LogSoftmax(row, lp);
        const size_t k = std::min<size_t>(std::clamp(p.n_top_logprobs, 0, kMaxDeviceTopLogprobs), lp.size());
        std::vector<int32_t> order(lp.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
        for (size_t i = 0; i < k; ++i) {
          top_ids[r * kMaxDeviceTopLogprobs + i] = order[i];
          top_lp[r * kMaxDeviceTopLogprobs + i] = lp[order[i]];
        }
      }
      SamplingParams sp;
      sp.temperature = p.temperature;
      sp.top_k = p.top_k;
      sp.top_p = p.top_p;
      sp.min_p = p.min_p;
      sp.repetition_penalty = p.repetition_penalty;
      sp.presence_penalty = p.presence_penalty;
      sp.frequency_penalty = p.frequency_penalty;
      sp.seed = p.seed;
      const int32_t id = Sampler(sp).Sample(row, prompt, generated, p.counter);
      out[r] = id;
      if (p.want_logprob && id >= 0 && id < V) out_lp[r] = lp[id];
    }
  }
  (void)CopyToDevice(ids.data, out.data(), out.size() * sizeof(int32_t));
  if (!logprobs.empty()) (void)CopyToDevice(logprobs.data, out_lp.data(), out_lp.size() * sizeof(float));
  if (batch.any_logprobs && !batch.top_ids.empty()) {
    (void)CopyToDevice(batch.top_ids.data, top_ids.data(), top_ids.size() * sizeof(int32_t));
    (void)CopyToDevice(batch.top_logprobs.data, top_lp.data(), top_lp.size() * sizeof(float));
  }
}

}  // namespace kiln
