// A tokenizer assembled from HF-tokenizers-style stages: added-token split -> normalizer ->
// pre-tokenizer -> BPE model -> post-processor, and a decoder chain. tokenizer.json,
// vocab.json+merges.txt, tiktoken and GGUF vocabularies are all loaded into this one shape.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace kiln::tok {

struct NormalizerOp {
  enum Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kPrepend, kReplace, kStrip } kind;
  std::string a, b;                // Prepend: a; Replace: a -> b (literal)
  std::shared_ptr<Regex> regex;    // Replace with a regex pattern
  bool left = true, right = true;  // Strip
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokOp {
  enum Kind { kSplit, kByteLevel, kMetaspace, kDigits, kWhitespaceSplit } kind;
  std::shared_ptr<Regex> regex;  // Split (regex), ByteLevel with use_regex
  std::string literal;           // Split with a string pattern
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;             // ByteLevel
  std::string replacement = "\xE2\x96\x81";  // Metaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;  // Metaspace
  bool individual_digits = false;
};

struct DecoderOp {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string a, b;  // Replace a -> b; Strip content a
  int start = 0, stop = 0;
  bool strip_first_space = true;  // Metaspace: drop the leading space of the first token
  std::string replacement = "\xE2\x96\x81";
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
  bool match_in_text = true;  // false: only ever produced by id (tiktoken encode_ordinary)
};

struct PipelineSpec {
  std::string source;  // file name for messages
  BpeModel model;
  std::vector<NormalizerOp> normalizers;
  std::vector<PreTokOp> pretokenizers;
  std::vector<DecoderOp> decoders;
  std::vector<AddedToken> added;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added by Encode(add_special=true)
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  bool cleanup_spaces = false;  // transformers' clean_up_tokenization_spaces
};

class PipelineTokenizer final : public Tokenizer {
 public:
  explicit PipelineTokenizer(PipelineSpec spec);
  std::vector<int32_t> Encode(std::string_view text, bool add_special) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return s_.bos_id; }
  std::vector<int32_t> eos_ids() const override { return s_.eos_ids; }
  bool is_special(int32_t id) const override;
  std::string piece(int32_t id) const override;
  std::string TokenBytes(int32_t prev, int32_t id) const override;
  const PipelineSpec& spec() const { return s_; }

 private:
  struct Segment {
    size_t begin, end;  // byte range of the input
    int32_t added_id;   // -1: plain text
  };
  std::vector<Segment> SplitAdded(std::string_view text) const;
  void EncodeText(std::string_view text, bool at_start, std::vector<int32_t>* out) const;
  std::string DecodeRaw(std::span<const int32_t> ids, bool skip_special) const;

  // Words repeat a lot in real text; caching their ids makes BPE several times faster.
  struct WordCache {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  PipelineSpec s_;
  std::unique_ptr<WordCache> cache_;
  int32_t vocab_size_ = 0;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::vector<std::vector<size_t>> added_by_first_byte_;  // [256] -> indices, longest first
};

// Stage helpers (normalize.cpp, pretokenize.cpp, decode_ops.cpp).
std::string ApplyNormalizers(const std::vector<NormalizerOp>& ops, std::string text);
struct PreToken {
  std::string text;
  bool at_start;  // begins at offset 0 of the original input (Metaspace "first")
};
std::vector<PreToken> ApplyPreTokenizers(const std::vector<PreTokOp>& ops, std::vector<PreToken> pieces);
std::string ApplyDecoders(const std::vector<DecoderOp>& ops, std::vector<std::string> tokens);
std::string CleanUpTokenizationSpaces(std::string text);

}  // namespace kiln::tok
