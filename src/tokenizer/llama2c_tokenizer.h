// llama2.c's tokenizer.bin (run.c semantics): score-ordered merges over UTF-8 characters,
// a dummy-prefix space, byte fallback to <0xXX> (ids 3..258), BOS=1, EOS=2.
#pragma once
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kiln {

// vocab_size < 0: read pieces until the end of the file (the file does not store the count).
Expected<std::unique_ptr<Tokenizer>> LoadLlama2cTokenizer(const std::string& path, int vocab_size = -1);

}  // namespace kiln
