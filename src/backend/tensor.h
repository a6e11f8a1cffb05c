// A typed, non-owning view of backend memory (host memory for the CPU backend, device
// memory for CUDA). Row-major, outermost dimension first.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"

namespace kiln {

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int ndim = 0;
  std::array<int64_t, 4> shape{0, 0, 0, 0};

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims) : data(d), dtype(t) {
    for (int64_t v : dims) shape[ndim++] = v;
  }
  bool empty() const { return data == nullptr; }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return DTypeBytes(dtype, numel()); }
  int64_t cols() const { return ndim ? shape[ndim - 1] : 1; }
  int64_t rows() const { return ndim ? numel() / cols() : 1; }
  // Rows [begin, begin+count) of the outermost dimension.
  Tensor SliceRows(int64_t begin, int64_t count) const {
    Tensor t = *this;
    int64_t row_elems = numel() / shape[0];
    t.data = static_cast<char*>(data) + DTypeBytes(dtype, begin * row_elems);
    t.shape[0] = count;
    return t;
  }
  Tensor Reshape(std::initializer_list<int64_t> dims) const {
    Tensor t(data, dtype, dims);
    return t;
  }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
  std::string ShapeStr() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

// A weight as the backend holds it: plain (f32/f16/bf16) or weight-only quantized
// (int8/int4 with per-group scales), possibly repacked by the backend at load.
struct Weight {
  Tensor w;       // [out, in] (quantized: packed as the engine's "kernels" section says)
  Tensor scales;  // quantized only: [out, in / group_size]
  int group_size = 0;
  bool empty() const { return w.empty(); }
  int64_t out_features() const { return w.dim(0); }
};

}  // namespace kiln
