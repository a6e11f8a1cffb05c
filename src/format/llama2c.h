// llama2.c checkpoint reader (legacy v0 and v1 fp32 exports), and the rotary row permutation
// that llama2.c and llama.cpp (GGUF llama) share. OpenLlama2cCheckpoint is in checkpoint.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "format/checkpoint.h"
#include "kiln/status.h"

namespace kiln {

// Parses an in-memory llama2.c export into HF form (used by OpenLlama2cCheckpoint and the
// fuzzer). Unpermuted tensors point into `data`, which must outlive the result; permuted
// q/k buffers are owned by Checkpoint::owners. `path` only names the file in errors.
Expected<Checkpoint> ParseLlama2c(const uint8_t* data, size_t size, const std::string& path);

// Converts q/k projection rows from the interleaved rotary layout (Meta / llama2.c / GGUF
// llama: each head's rows pair up as (x0,x1),(x2,x3),...) to HF's rotate-half layout (first
// half of each head's rows, then the second half): per head, HF row j < hd/2 <- row 2j and
// HF row hd/2 + j <- row 2j + 1. `src` and `dst` are [n_heads * head_dim, row_bytes] and
// must not alias; head_dim must be even. Works for any element type (rows are moved whole;
// a 1-D bias is rows of one element).
void UnpermuteRotaryRows(const uint8_t* src, uint8_t* dst, int64_t n_heads, int64_t head_dim,
                         size_t row_bytes);

}  // namespace kiln
