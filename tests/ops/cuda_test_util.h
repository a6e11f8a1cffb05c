// Helpers of the CUDA op tests (tests/ops): tensors with owned memory on a backend, uploads that
// round through the backend's dtype, reading back in f32, and the relative-L2 comparison.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"

#define KILN_REQUIRE_CUDA() \
  if (!::kiln::CudaAvailable()) GTEST_SKIP() << "no CUDA GPU: the CUDA op tests need one (CPU-only machine)"

namespace kiln::test_ops {

struct Buf {
  DeviceBuffer mem;
  Tensor t;
};

inline Tensor MakeTensor(void* p, DType dt, const std::vector<int64_t>& shape) {
  Tensor t;
  t.data = p;
  t.dtype = dt;
  t.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
  return t;
}

inline int64_t Numel(const std::vector<int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<int64_t>());
}

inline Buf Upload(Backend& b, DType dt, const std::vector<int64_t>& shape, const std::vector<float>& host) {
  const int64_t n = Numel(shape);
  EXPECT_EQ(static_cast<int64_t>(host.size()), n);
  auto mem = AllocBuffer(b, std::max<size_t>(DTypeBytes(dt, n), 16));
  EXPECT_TRUE(mem.ok()) << mem.status().message();
  std::vector<uint8_t> bytes(DTypeBytes(dt, n));
  EXPECT_TRUE(ConvertElements(host.data(), DType::kF32, bytes.data(), dt, n).ok());
  EXPECT_TRUE(b.CopyToDevice(mem->get(), bytes.data(), bytes.size()).ok());
  Buf out{std::move(*mem), {}};
  out.t = MakeTensor(out.mem.get(), dt, shape);
  return out;
}

inline Buf UploadI32(Backend& b, const std::vector<int64_t>& shape, const std::vector<int32_t>& host) {
  auto mem = AllocBuffer(b, std::max<size_t>(host.size() * 4, 16));
  EXPECT_TRUE(mem.ok());
  EXPECT_TRUE(b.CopyToDevice(mem->get(), host.data(), host.size() * 4).ok());
  Buf out{std::move(*mem), {}};
  out.t = MakeTensor(out.mem.get(), DType::kI32, shape);
  return out;
}

inline std::vector<float> RoundTo(DType dt, std::vector<float> v) {
  if (dt == DType::kF32) return v;
  std::vector<uint16_t> tmp(v.size());
  EXPECT_TRUE(ConvertElements(v.data(), DType::kF32, tmp.data(), dt, v.size()).ok());
  EXPECT_TRUE(ConvertElements(tmp.data(), dt, v.data(), DType::kF32, v.size()).ok());
  return v;
}

inline std::vector<float> Read(Backend& b, const Tensor& t) {
  std::vector<float> v(t.numel());
  Status st = b.CopyToHostF32(v.data(), t);
  EXPECT_TRUE(st.ok()) << st.message();
  return v;
}

inline std::vector<float> Random(std::mt19937& g, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

inline int Rand(std::mt19937& g, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }

// Relative L2 error; every element must be finite.
inline void ExpectClose(const std::vector<float>& ref, const std::vector<float>& got, double tol, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double num = 0, den = 0;
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (bad++ == 0) first_bad = i;
      continue;
    }
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " non-finite (unwritten?) elements, first at " << first_bad;
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  EXPECT_LE(rel, tol) << what << ": relative L2 error " << rel;
}

}  // namespace kiln::test_ops
