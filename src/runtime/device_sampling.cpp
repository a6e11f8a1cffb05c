#include "runtime/device_sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace kiln {

bool DeviceSamplingEnabled() {
  const char* v = std::getenv("KILN_HOST_SAMPLING");
  return !(v && v[0] == '1');
}

Status DeviceSampling::Reserve(Backend& backend, int max_rows, int64_t vocab) {
  backend_ = &backend;
  max_rows_ = std::max(max_rows, 1);
  vocab_ = vocab;
  const size_t n = static_cast<size_t>(max_rows_);
  KILN_ASSIGN_OR_RETURN(workspace_, AllocBuffer(backend, sizeof(float) * n * static_cast<size_t>(vocab + kDeviceSamplingRowScratch)));
  KILN_ASSIGN_OR_RETURN(out_, AllocBuffer(backend, sizeof(int32_t) * n * (2 + 2 * kMaxDeviceTopLogprobs)));
  KILN_ASSIGN_OR_RETURN(in_, AllocBuffer(backend, sizeof(DeviceSamplingRow) * n + sizeof(DevicePenaltyEntry) * 1024));
  return Status::Ok();
}

void DeviceSampling::Clear() {
  rows_.clear();
  penalties_.clear();
  want_lp_ = want_top_ = false;
}

void DeviceSampling::AddRow(const SamplingParams& p, std::span<const int32_t> prompt,
                            std::span<const int32_t> generated, uint64_t counter, bool want_logprob,
                            int n_top_logprobs) {
  DeviceSamplingRow row;
  row.temperature = p.temperature;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.top_k = p.top_k;
  row.n_top_logprobs = std::clamp(n_top_logprobs, 0, kMaxDeviceTopLogprobs);
  row.want_logprob = want_logprob ? 1 : 0;
  row.seed = p.seed;
  row.counter = counter;
  want_lp_ = want_lp_ || want_logprob || row.n_top_logprobs > 0;
  want_top_ = want_top_ || row.n_top_logprobs > 0;
  // The distinct tokens of the history, as the host penalties see them (penalties.cpp): the
  // repetition penalty over the set of prompt + generated ids, presence/frequency over the
  // generated counts; ids outside the vocab are ignored.
  const bool rep = std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f && p.repetition_penalty != 1.0f;
  const bool pf = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  row.penalty_begin = row.penalty_end = static_cast<int32_t>(penalties_.size());
  if (rep || pf) {
    scratch_.clear();
    auto add = [&](std::span<const int32_t> ids, int32_t gen) {
      for (int32_t id : ids)
        if (id >= 0 && id < vocab_) scratch_.emplace_back(id, gen);
    };
    if (rep) add(prompt, 0);
    add(generated, 1);
    std::sort(scratch_.begin(), scratch_.end());
    const int32_t r = static_cast<int32_t>(rows_.size());
    for (size_t i = 0; i < scratch_.size();) {
      DevicePenaltyEntry e;
      e.row = r;
      e.token = scratch_[i].first;
      for (; i < scratch_.size() && scratch_[i].first == e.token; ++i) {
        if (scratch_[i].second) ++e.count;
        else e.in_prompt = 1;
      }
      penalties_.push_back(e);
    }
    row.penalty_end = static_cast<int32_t>(penalties_.size());
  }
  rows_.push_back(row);
}

Status DeviceSampling::Enqueue(const Tensor& logits) {
  const int n = n_rows();
  if (n == 0) return Status::Ok();
  if (n > max_rows_ || logits.rows() != n || logits.cols() != vocab_)
    return Internal("device sampling: " + std::to_string(n) + " rows for logits [" + std::to_string(logits.rows()) +
                    ", " + std::to_string(logits.cols()) + "], reserved " + std::to_string(max_rows_) + " x " +
                    std::to_string(vocab_));
  const size_t row_bytes = rows_.size() * sizeof(DeviceSamplingRow);
  const size_t pen_bytes = penalties_.size() * sizeof(DevicePenaltyEntry);
  if (row_bytes + pen_bytes > in_.bytes()) {
    in_.Reset();
    KILN_ASSIGN_OR_RETURN(in_, AllocBuffer(*backend_, 2 * (row_bytes + pen_bytes)));
  }
  staging_.resize(row_bytes + pen_bytes);
  std::memcpy(staging_.data(), rows_.data(), row_bytes);
  if (pen_bytes) std::memcpy(staging_.data() + row_bytes, penalties_.data(), pen_bytes);
  KILN_RETURN_IF_ERROR(backend_->CopyToDevice(in_.get(), staging_.data(), staging_.size()));

  auto* in = static_cast<uint8_t*>(in_.get());
  auto* out = static_cast<int32_t*>(out_.get());
  const int64_t rows = n, k = kMaxDeviceTopLogprobs;
  DeviceSamplingBatch b;
  b.rows = Tensor(in, DType::kI32, {rows, 16});
  const int64_t n_pen = static_cast<int64_t>(penalties_.size());
  if (n_pen > 0) b.penalties = Tensor(in + row_bytes, DType::kI32, {n_pen, 4});
  b.n_penalties = static_cast<int>(n_pen);
  b.any_logprobs = want_lp_;
  b.workspace = Tensor(workspace_.get(), DType::kF32, {rows * (vocab_ + kDeviceSamplingRowScratch)});
  b.top_ids = Tensor(out + 2 * rows, DType::kI32, {rows, k});
  b.top_logprobs = Tensor(out + (2 + k) * rows, DType::kF32, {rows, k});
  Tensor ids(out, DType::kI32, {rows});
  Tensor lp;
  if (want_lp_) lp = Tensor(out + rows, DType::kF32, {rows});
  backend_->SampleRows(ids, lp, logits, b);
  return Status::Ok();
}

Status DeviceSampling::Fetch() {
  const int64_t rows = n_rows(), k = kMaxDeviceTopLogprobs;
  if (rows == 0) return Status::Ok();
  auto* out = static_cast<int32_t*>(out_.get());
  const size_t words = static_cast<size_t>(want_top_ ? (2 + 2 * k) * rows : want_lp_ ? 2 * rows : rows);
  host_out_.resize(words);
  return backend_->CopyToHost(host_out_.data(), out, words * sizeof(int32_t));
}

}  // namespace kiln
