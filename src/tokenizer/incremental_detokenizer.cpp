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
// A token run that still ends in U+FFFD after this many tokens is invalid, not incomplete
// (a UTF-8 character has at most 4 bytes); emitting then bounds the window.
constexpr size_t kMaxHeldTokens = 16;

// The part of `full` after `prev`. Decoders are prefix-stable except in rare byte-fallback
// cases; then resume at the next character boundary so the output stays valid UTF-8.
std::string Tail(const std::string& full, const std::string& prev) {
  if (full.compare(0, prev.size(), prev) == 0) return full.substr(prev.size());
  size_t i = std::min(prev.size(), full.size());
  while (i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80) ++i;
  return full.substr(i);
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
  const std::string prev =
      tok_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string full = tok_.Decode(all.subspan(prefix_offset_), skip_special_);
  const bool held_long = ids_.size() - read_offset_ > kMaxHeldTokens;
  if (full.size() <= prev.size() || (EndsWithReplacement(full) && !held_long))
    return {};  // wait for more bytes
  std::string out = Tail(full, prev);
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::span<const int32_t> all(ids_);
  const std::string prev =
      tok_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string full = tok_.Decode(all.subspan(prefix_offset_), skip_special_);
  prefix_offset_ = read_offset_ = ids_.size();
  if (full.size() <= prev.size()) return {};
  return Tail(full, prev);
}

}  // namespace kiln
