#include "runtime/stop_matcher.h"

#include <algorithm>

namespace kiln {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

bool StopMatcher::Feed(const std::string& text, std::string* emit) {
  if (stopped_) return true;
  const size_t old_size = text_.size();
  text_ += text;
  size_t longest = 0;
  for (const auto& s : stops_) longest = std::max(longest, s.size());
  // A stop string can only complete in the region touched by the new text.
  const size_t search_from = old_size >= longest ? old_size - longest + 1 : 0;
  size_t cut = std::string::npos;
  for (const auto& s : stops_) {
    size_t p = text_.find(s, search_from);
    if (p != std::string::npos) cut = std::min(cut, p);
  }
  if (cut != std::string::npos) {
    text_.resize(cut);
    if (cut > emitted_) emit->append(text_, emitted_, cut - emitted_);
    emitted_ = std::max(emitted_, cut);
    stopped_ = true;
    return true;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k)
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  const size_t safe = text_.size() - hold;
  if (safe > emitted_) {
    emit->append(text_, emitted_, safe - emitted_);
    emitted_ = safe;
  }
  return false;
}

std::string StopMatcher::Finish() {
  std::string rest = emitted_ < text_.size() ? text_.substr(emitted_) : std::string();
  emitted_ = text_.size();
  return rest;
}

}  // namespace kiln
