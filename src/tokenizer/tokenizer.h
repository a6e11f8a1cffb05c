// The tokenizer contract the rest of kiln uses. Implementations live beside this file
// (llama2.c tokenizer.bin, SentencePiece .model, HF tokenizer.json, tiktoken, GGUF vocab).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
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
  virtual int32_t bos_id() const = 0;                // -1 when none
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
  std::string pending_;  // bytes held back until a UTF-8 character completes
};

// Loads a tokenizer from a folder or engine directory, or from a single file.
// A folder is read as transformers 5 reads it: the first present of tokenizer.json,
// tokenizer.model (SentencePiece or tiktoken), tokenizer.bin (llama2.c), tokenizer.gguf.json,
// *.tiktoken, vocab.json + merges.txt, with tokenizer_config.json (add_bos/eos, added tokens,
// Llama Metaspace rebuild, bos/eos names) and generation_config.json (eos ids) on top.
// A single file is read with its own library's semantics (tokenizer.json = HF tokenizers,
// *.gguf = its embedded vocabulary, *.bin = llama2.c, *.model, *.tiktoken, tokenizer.gguf.json).
Expected<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

// A tokenizer from GGUF key/value metadata (tokenizer.ggml.model "llama" = SentencePiece-BPE by
// scores as llama.cpp, "gpt2" = byte-level BPE with merges), e.g. ReadGgufMetadata(path).
Expected<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const nlohmann::json& gguf_metadata);

// Puts the tokenizer of `source` (a folder, a tokenizer file, or a .gguf) into engine_dir so that
// LoadTokenizer(engine_dir) finds it: files are copied under their canonical names; for GGUF the
// tokenizer.* metadata is written to tokenizer.gguf.json. Returns the file names written.
Expected<std::vector<std::string>> SaveTokenizerForEngine(const std::string& source,
                                                          const std::string& engine_dir);
// Writes the tokenizer.* keys of GGUF metadata to engine_dir/tokenizer.gguf.json.
Status SaveGgufTokenizerJson(const nlohmann::json& gguf_metadata, const std::string& engine_dir);

}  // namespace kiln
