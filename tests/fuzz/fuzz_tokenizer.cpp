// libFuzzer target for the tokenizers, two ways in, by the input's first byte:
//  - '{': the input is a tokenizer.json document (as a downloaded model carries), or GGUF tokenizer
//    metadata as JSON where it has "tokenizer.ggml.model": loading it must give a pipeline or an
//    error naming the problem; a pipeline must then encode and decode a fixed text with ids inside
//    its vocabulary.
//  - 'T': the rest is a tiktoken ranks file ("<base64> <rank>" lines), loaded and used the same way.
//  - anything else: real tokenizers (tokenizer.json files named in KILN_FUZZ_TOKENIZERS, colon-
//    separated; run_fuzzers.sh passes Llama-3, Llama-2, GPT-2, Qwen2.5, Phi-3 and ChatGLM3) encode the
//    rest of the input as a prompt from a client: ids inside the vocabulary, and decoding any ids
//    must not crash. The first byte picks the tokenizer and whether special tokens are added.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/hf_loaders.h"
#include "tokenizer/pipeline.h"

namespace {

std::vector<std::unique_ptr<kiln::tok::PipelineTokenizer>>& Tokenizers() {
  static std::vector<std::unique_ptr<kiln::tok::PipelineTokenizer>> all;
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("KILN_FUZZ_TOKENIZERS");
  std::string paths = env ? env : "";
  for (size_t at = 0; at < paths.size();) {
    size_t end = paths.find(':', at);
    if (end == std::string::npos) end = paths.size();
    const std::string path = paths.substr(at, end - at);
    at = end + 1;
    if (path.empty()) continue;
    auto j = kiln::tok::ReadJsonFile(path);
    auto spec =
        j.ok() ? kiln::tok::SpecFromTokenizerJson(*j, path) : kiln::Expected<kiln::tok::PipelineSpec>(j.status());
    if (!spec.ok()) {
      std::fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path.c_str(), spec.status().message().c_str());
      std::abort();
    }
    Tokenizers().push_back(std::make_unique<kiln::tok::PipelineTokenizer>(std::move(*spec)));
  }
  if (Tokenizers().empty()) {
    std::fprintf(stderr, "fuzz_tokenizer: set KILN_FUZZ_TOKENIZERS to tokenizer.json paths\n");
    std::abort();
  }
  return 0;
}

namespace {

void EncodeDecode(const kiln::tok::PipelineTokenizer& tok, std::string_view text, bool special) {
  const std::vector<int32_t> ids = tok.Encode(text, special);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  (void)tok.Decode(ids, false);
  (void)tok.Decode(ids, true);
}

// A tokenizer.json document from the fuzzer: load, then use what loads.
int FuzzDocument(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto spec = j.is_object() && j.contains("tokenizer.ggml.model")
                  ? kiln::tok::SpecFromGguf(j)
                  : kiln::tok::SpecFromTokenizerJson(j, "fuzz/tokenizer.json");
  if (!spec.ok()) return 0;
  const kiln::tok::PipelineTokenizer tok(std::move(*spec));
  if (tok.vocab_size() <= 0) return 0;
  EncodeDecode(tok, "Hello world! \xe4\xb8\xad\xe6\x96\x87 123 <s>\n", true);
  return 0;
}

// A tiktoken ranks file from the fuzzer (the loader reads a path: one scratch file per process).
int FuzzTiktoken(const uint8_t* data, size_t size) {
  static const std::string path = "fuzz_tiktoken_" + std::to_string(getpid()) + ".tiktoken";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto spec = kiln::tok::SpecFromTiktoken(path, /*have_config_specials=*/false);
  if (!spec.ok()) return 0;
  const kiln::tok::PipelineTokenizer tok(std::move(*spec));
  EncodeDecode(tok, "Hello world! \xe4\xb8\xad\xe6\x96\x87 123 <|endoftext|>\n", true);
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] == '{') return FuzzDocument(data, size);
  if (data[0] == 'T') return FuzzTiktoken(data + 1, size - 1);
  const auto& all = Tokenizers();
  const auto& tok = *all[data[0] % all.size()];
  const bool special = (data[0] / all.size()) % 2 == 1;
  EncodeDecode(tok, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), special);
  // The input's bytes read as ids (modulo the vocabulary): arbitrary id sequences decode too.
  std::vector<int32_t> raw;
  for (size_t i = 1; i + 1 < size; i += 2) raw.push_back(((data[i] << 8) | data[i + 1]) * 7 % tok.vocab_size());
  (void)tok.Decode(raw, false);
  for (size_t i = 0; i < raw.size(); ++i) (void)tok.TokenBytes(i ? raw[i - 1] : -1, raw[i]);
  return 0;
}
