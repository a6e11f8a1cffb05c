// A compiled PCRE2 pattern (UTF + UCP, JIT) used by Split pre-tokenizers and Replace.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/status.h"

namespace kiln::tok {

class Regex {
 public:
  static Expected<std::shared_ptr<Regex>> Compile(const std::string& pattern);
  ~Regex();
  // Every non-overlapping match, left to right, as [begin, end) byte offsets. Empty matches
  // are skipped. Invalid UTF-8 in the subject never matches but does not fail.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Rust-regex (HF tokenizers) and tiktoken patterns, PCRE2 flavour.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;
extern const char* const kCl100kPattern;

}  // namespace kiln::tok
