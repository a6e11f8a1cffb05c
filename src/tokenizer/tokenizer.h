// The tokenizer contract the rest of kiln uses. Implementations live beside this file
// (llama2.c tokenizer.bin, SentencePiece .model, HF tokenizer.json, tiktoken, GGUF vocab).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_special: BOS/EOS and post-processor tokens as the tokenizer's config asks
  // ("with special tokens" in HF terms; for llama2.c: BOS prepended).
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special) const = 0;
  // Full decode of a sequence (HF decode semantics; skip_special drops special tokens).
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;             // -1 when none
  virtual std::vector<int32_t> eos_ids() const = 0;  // every id that ends generation
  virtual bool is_special(int32_t id) const = 0;
  // The raw vocabulary piece of a token (as stored in the file), for inspection.
  virtual std::string piece(int32_t id) const = 0;
  // The bytes this token contributes when it follows `prev` in a decode; used by the
  // incremental detokenizer (e.g. SentencePiece drops the leading space after BOS).
  virtual std::string TokenBytes(int32_t prev, int32_t id) const = 0;
};

// Streams text token by token; never emits a partial UTF-8 character; the concatenation
// of all Push() results and Flush() equals Decode() of the whole sequence.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tok, bool skip_special = false);
  // Seeds the context with the prompt (no text emitted for it).
  void SetPrompt(std::span<const int32_t> prompt_ids);
  std::string Push(int32_t id);
  std::string Flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // tokens already turned into emitted text
  size_t read_offset_ = 0;
  std::string pending_;       // bytes held back until a UTF-8 character completes
};

// Loads a tokenizer from a folder (tokenizer.json / tokenizer.model / tokenizer.bin /
// tokenizer_config.json), a single tokenizer file, or an engine directory
// (its config.json "tokenizer" section names the files).
Expected<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

}  // namespace kiln
