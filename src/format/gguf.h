// GGUF (llama.cpp) reader: mmapped, fully validated. Metadata is exposed as JSON (arrays become
// JSON arrays); tensors keep GGUF's own order of dims (ne[0] is the fastest-varying dim).
// OpenGgufCheckpoint (checkpoint.h) builds on this to present a llama-family GGUF in HF form.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap_file.h"
#include "format/checkpoint.h"
#include "kiln/status.h"

namespace kiln {

// GGUF metadata value types (gguf_type in ggml).
enum class GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// ggml tensor types that kiln names (the rest are still size-checked when ggml's block size is
// known; an unknown type is rejected as Unsupported).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

// "F32", "Q4_K", ... or "type 123" for a type kiln does not know.
std::string GgmlTypeName(uint32_t type);
// Elements per block and bytes per block of a ggml type; false for an unknown type.
bool GgmlBlockInfo(uint32_t type, uint64_t* block_elems, uint64_t* block_bytes);

struct GgufTensorInfo {
  std::string name;               // GGUF name, e.g. "blk.0.attn_q.weight"
  uint32_t type = 0;              // GgmlType value
  std::vector<uint64_t> dims;     // ne[0..n): ne[0] is the fastest-varying (innermost) dim
  uint64_t offset = 0;            // relative to the start of the data section
  const uint8_t* data = nullptr;  // into the mapping / parsed buffer
  size_t nbytes = 0;
  uint64_t numel() const {
    uint64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
};

class GgufFile {
 public:
  static Expected<GgufFile> Open(const std::string& path);

  uint32_t version() const { return version_; }
  // Key/value metadata: integers, floats and bools as JSON scalars (f32 values rounded to their
  // shortest decimal form, so 1e-5f reads back as 1e-05), strings as UTF-8 (invalid sequences
  // replaced by U+FFFD), arrays as JSON arrays (nested arrays allowed).
  const nlohmann::json& metadata() const { return metadata_; }
  // GGUF value type of each metadata key (for arrays: the element type in `array_types`).
  const std::map<std::string, GgufValueType>& metadata_types() const { return types_; }
  const std::map<std::string, GgufValueType>& array_types() const { return array_types_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* Find(const std::string& name) const;
  uint64_t alignment() const { return alignment_; }
  const uint8_t* data() const { return data_; }  // start of the data section
  size_t data_size() const { return data_size_; }
  const std::string& path() const { return path_; }
  // The mapping that keeps tensor data alive (null for ParseGguf on a caller's buffer).
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  friend Expected<GgufFile> ParseGguf(const uint8_t* data, size_t size, const std::string& path);
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, GgufValueType> types_;
  std::map<std::string, GgufValueType> array_types_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  const uint8_t* data_ = nullptr;
  size_t data_size_ = 0;
};

// Parses and validates an in-memory GGUF image (the bytes must outlive the result): magic,
// version 2 or 3, counts bounded by the size, string/array lengths, unique keys and tensor
// names, general.alignment (a power of two), tensor dims/types, offsets aligned and
// offset+size inside the file, no overlapping tensors. `path` only names the file in errors.
Expected<GgufFile> ParseGguf(const uint8_t* data, size_t size, const std::string& path);

// A parsed llama-architecture GGUF in HF form (what OpenGgufCheckpoint returns; separate so
// the fuzzer can reach it without a file). Tensors point into `file`'s bytes.
Expected<Checkpoint> GgufToCheckpoint(const GgufFile& file);

// The metadata of the GGUF file at `path` as JSON (see GgufFile::metadata).
Expected<nlohmann::json> ReadGgufMetadata(const std::string& path);

}  // namespace kiln
