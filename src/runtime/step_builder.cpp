#include "runtime/step_builder.h"

#include <algorithm>

namespace kiln {

// Layout of the packed int32 buffer (offsets in elements), packed for this step's T tokens,
// L logits rows and S sequences so that one small copy moves it (the offsets depend only on
// (T, L, S): a step graph recorded for that shape finds its inputs at the same addresses):
//   tokens [T] | positions [T] | slots [T] | logit_rows [max(L,1)] | q_start [S+1] | seq_lens [S] | tables [S*B]
Status StepBuilder::Reserve(Backend& b, int max_tokens, int max_seqs, int max_blocks_per_seq) {
  if (backend_ == &b && max_tokens <= max_tokens_ && max_seqs <= max_seqs_ && max_blocks_per_seq <= max_blocks_)
    return Status::Ok();
  backend_ = &b;
  max_tokens_ = std::max(max_tokens, max_tokens_);
  max_seqs_ = std::max(max_seqs, max_seqs_);
  max_blocks_ = std::max(max_blocks_per_seq, max_blocks_);
  const size_t n = 4 * static_cast<size_t>(max_tokens_) + 2 * max_seqs_ + 1 +
                   static_cast<size_t>(max_seqs_) * max_blocks_;
  host_.assign(n, 0);
  KILN_ASSIGN_OR_RETURN(device_, AllocBuffer(b, n * sizeof(int32_t)));
  return Status::Ok();
}

Expected<StepInputs> StepBuilder::Build(std::span<const SequenceChunk> chunks, int block_size) {
  const int S = static_cast<int>(chunks.size());
  int T = 0, L = 0, max_q = 0, max_len = 0;
  for (const auto& c : chunks) {
    const int n = static_cast<int>(c.tokens.size());
    if (n == 0) return InvalidArgument("step builder: a sequence chunk has no tokens");
    T += n;
    L += c.logits == LogitsWanted::kAll ? n : c.logits == LogitsWanted::kLast ? 1 : 0;
    max_q = std::max(max_q, n);
    const int len = c.start_pos + n;
    max_len = std::max(max_len, len);
    const int64_t need_blocks = (len + block_size - 1) / block_size;
    if (static_cast<int64_t>(c.block_table.size()) < need_blocks)
      return Internal("step builder: block table too short for " + std::to_string(len) + " positions");
    if (need_blocks > max_blocks_) return Internal("step builder: sequence needs more blocks than reserved");
  }
  if (T > max_tokens_ || S > max_seqs_)
    return Internal("step builder: step of " + std::to_string(T) + " tokens / " + std::to_string(S) +
                    " sequences exceeds the reservation");
  int32_t* tok = host_.data();
  int32_t* pos = tok + T;
  int32_t* slot = pos + T;
  int32_t* rows = slot + T;
  int32_t* qs = rows + std::max(L, 1);
  int32_t* lens = qs + S + 1;
  int32_t* tables = lens + S;
  const size_t used = static_cast<size_t>(tables - host_.data()) + static_cast<size_t>(S) * max_blocks_;
  rows[0] = 0;
  // One-token chunks (decodes) go first, so that a mixed step's attention can run them through
  // the decode kernel and the rest through the prefill kernel (AttentionBatch::n_decode_seqs).
  // Logits rows keep the callers' chunk order.
  order_.clear();
  for (int s = 0; s < S; ++s)
    if (chunks[s].tokens.size() == 1) order_.push_back(s);
  const int n_decode = static_cast<int>(order_.size());
  for (int s = 0; s < S; ++s)
    if (chunks[s].tokens.size() != 1) order_.push_back(s);
  first_token_.assign(S, 0);
  int t = 0;
  for (int s = 0; s < S; ++s) {
    const auto& c = chunks[order_[s]];
    const int n = static_cast<int>(c.tokens.size());
    first_token_[order_[s]] = t;
    qs[s] = t;
    lens[s] = c.start_pos + n;
    std::fill(tables + static_cast<size_t>(s) * max_blocks_, tables + static_cast<size_t>(s + 1) * max_blocks_, 0);
    std::copy(c.block_table.begin(),
              c.block_table.begin() + std::min<size_t>(c.block_table.size(), static_cast<size_t>(max_blocks_)),
              tables + static_cast<size_t>(s) * max_blocks_);
    for (int i = 0; i < n; ++i, ++t) {
      const int p = c.start_pos + i;
      tok[t] = c.tokens[i];
      pos[t] = p;
      slot[t] = c.block_table[p / block_size] * block_size + p % block_size;
    }
  }
  qs[S] = t;
  int l = 0;
  for (int s = 0; s < S; ++s) {
    const auto& c = chunks[s];
    const int n = static_cast<int>(c.tokens.size());
    if (c.logits == LogitsWanted::kAll)
      for (int i = 0; i < n; ++i) rows[l++] = first_token_[s] + i;
    else if (c.logits == LogitsWanted::kLast)
      rows[l++] = first_token_[s] + n - 1;
  }
  KILN_RETURN_IF_ERROR(backend_->CopyToDevice(device_.get(), host_.data(), used * sizeof(int32_t)));
  int32_t* d = static_cast<int32_t*>(device_.get());
  auto at = [&](int32_t* host_ptr) { return d + (host_ptr - host_.data()); };
  StepInputs in;
  in.token_ids = Tensor(at(tok), DType::kI32, {T});
  in.logit_rows = Tensor(at(rows), DType::kI32, {std::max(L, 1)});
  in.n_logits = L;
  AttentionBatch& b = in.batch;
  b.n_seqs = S;
  b.n_tokens = T;
  b.max_q_len = max_q;
  b.n_decode_seqs = n_decode;
  b.max_seq_len = max_len;
  b.max_blocks_per_seq = max_blocks_;
  b.block_size = block_size;
  b.positions = Tensor(at(pos), DType::kI32, {T});
  b.slot_mapping = Tensor(at(slot), DType::kI32, {T});
  b.q_start = Tensor(at(qs), DType::kI32, {S + 1});
  b.seq_lens = Tensor(at(lens), DType::kI32, {S});
  b.block_tables = Tensor(at(tables), DType::kI32, {S, max_blocks_});
  return in;
}

}  // namespace kiln
