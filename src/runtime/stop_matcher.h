// Applies stop strings to streamed text: holds back any tail that could still become a stop
// string, and cuts the text where one completes (the stop string itself is not emitted).
#pragma once
#include <string>
#include <vector>

namespace kiln {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds decoded text; appends what may now be emitted to *emit. True when a stop string matched.
  bool Feed(const std::string& text, std::string* emit);
  // End of generation: releases the held-back tail.
  std::string Finish();
  // All text accepted so far (cut at the stop string when one matched).
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  std::string text_;
  size_t emitted_ = 0;
  bool stopped_ = false;
};

}  // namespace kiln
