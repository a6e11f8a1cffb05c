// Loaders that fill a PipelineSpec: HF tokenizer.json, vocab.json + merges.txt, tiktoken
// files, GGUF tokenizer metadata; and the transformers tokenizer_config.json overlay.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/pipeline.h"

namespace kiln::tok {

// Pure HF-tokenizers semantics of one tokenizer.json document.
Expected<PipelineSpec> SpecFromTokenizerJson(const nlohmann::json& j, const std::string& source);
// GPT-2 style vocab.json + merges.txt (byte-level BPE). qwen_style: NFC + Qwen2 split regex.
Expected<PipelineSpec> SpecFromVocabMerges(const std::string& vocab_path, const std::string& merges_path,
                                           bool qwen_style);
// tiktoken ranks file ("<base64> <rank>" lines); the split pattern is chosen from the size
// (128000 ranks: Llama-3, otherwise cl100k) and standard specials are added when no config names them.
Expected<PipelineSpec> SpecFromTiktoken(const std::string& path, bool have_config_specials);
// GGUF metadata (tokenizer.ggml.*) as JSON.
Expected<PipelineSpec> SpecFromGguf(const nlohmann::json& md);

// Applies what transformers 5 does on top of the files: tokenizer_config.json (class-specific
// rebuild for Llama tokenizers, add_bos/add_eos, added_tokens_decoder, bos/eos, cleanup) and
// generation_config.json eos ids. Either json may be null.
Status ApplyTransformersConfig(const nlohmann::json& config, const nlohmann::json& generation_config,
                               PipelineSpec* spec);

// Reads a JSON file with a message naming it on failure.
Expected<nlohmann::json> ReadJsonFile(const std::string& path);
// "bos_token": "<s>" or {"content": "<s>", ...} -> "<s>"; "" when absent/null.
std::string TokenContent(const nlohmann::json& v);

}  // namespace kiln::tok
