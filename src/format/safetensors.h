// safetensors: mmapped reader with full validation, and a streaming writer that keeps
// tensors naturally aligned by header padding and tensor order (no holes), so the file
// stays readable by the safetensors library and can be copied straight into memory.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"
#include "kiln/status.h"

namespace kiln {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  size_t nbytes = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

std::string ShapeString(const std::vector<int64_t>& shape);  // "[4, 64]"

class SafetensorsFile {
 public:
  static Expected<SafetensorsFile> Open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer); `file` keeps the bytes alive if set.
  static Expected<SafetensorsFile> Parse(const uint8_t* data, size_t size, const std::string& path);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  // Fills exactly DTypeBytes(dtype, numel) bytes at dst.
  using Producer = std::function<Status(uint8_t* dst)>;
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, Producer producer);
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // progress(done_tensors, total_tensors, name) is called before each tensor is produced.
  Status Write(const std::string& path,
               const std::function<void(size_t, size_t, const std::string&)>& progress = {}) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    Producer producer;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace kiln
