// SentencePiece .model files through libsentencepiece (Debian libsentencepiece-dev).
#pragma once
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kiln {

// add_bos / add_eos: what Encode(add_special=true) adds (Llama: BOS only).
// special_text: control pieces written in the text ("<s>", "[INST]") become their tokens, as in
// transformers; false keeps libsentencepiece's own behaviour (they are spelled out).
Expected<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path, bool add_bos = true,
                                                                bool add_eos = false,
                                                                bool special_text = false);
// True if the bytes look like a serialized SentencePiece ModelProto (used to tell it from tiktoken).
bool LooksLikeSentencePiece(const std::string& path);

}  // namespace kiln
