// Streaming detokenization (the prefix/read-offset scheme of HF text-generation-inference):
// each step decodes a short window twice, with and without the newest tokens, and emits the
// difference once it no longer ends in U+FFFD (an incomplete UTF-8 character). Decoding both
// from the same window start keeps decoder rules such as SentencePiece's leading-space strip
// from changing the result.
#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace kiln {
namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
bool EndsWithReplacement(const std::string& s) {
  return s.size() >= 3 && std::string_view(s).substr(s.size() - 3) == kReplacement;
}
}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

void IncrementalDetokenizer::SetPrompt(std::span<const int32_t> prompt_ids) {
  ids_.assign(prompt_ids.begin(), prompt_ids.end());
  // A few tokens of context so the first generated token keeps its leading space.
  read_offset_ = ids_.size();
  prefix_offset_ = ids_.size() > 5 ? ids_.size() - 5 : 0;
  pending_.clear();
}

std::string IncrementalDetokenizer::Push(int32_t id) {
  ids_.push_back(id);
  std::span<const int32_t> all(ids_);
  const std::string prev = tok_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string full = tok_.Decode(all.subspan(prefix_offset_), skip_special_);
  if (full.size() <= prev.size() || EndsWithReplacement(full)) return {};  // wait for more bytes
  std::string out = full.compare(0, prev.size(), prev) == 0 ? full.substr(prev.size()) : full.substr(std::min(prev.size(), full.size()));
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::span<const int32_t> all(ids_);
  const std::string prev = tok_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string full = tok_.Decode(all.subspan(prefix_offset_), skip_special_);
  prefix_offset_ = read_offset_ = ids_.size();
  if (full.size() <= prev.size()) return {};
  return full.substr(prev.size());
}

}  // namespace kiln
