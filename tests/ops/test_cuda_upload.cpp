// Weight upload through the pinned, double-buffered staging path: tensors of several 32 MiB
// chunks, with and without conversion, arrive exactly, and the source may be freed as soon as
// UploadWeight returns (nothing reads it later).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace kiln {
namespace {

TEST(CudaOpsUpload, MultiChunkUploadsArriveExactly) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA GPU: uploads are checked on the H100 (bench/h100_run.sh)";
  const int64_t rows = 5003, cols = 4099;  // 20.5M elements: 41 MB in bf16, 82 MB in f32 (2-3 chunks)
  const int64_t n = rows * cols;
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<float>((i * 2654435761u) % 4093) / 512.0f - 4.0f;
  for (DType act : {DType::kF32, DType::kBF16}) {
    auto gpu = MakeCudaBackend(0, act);
    ASSERT_TRUE(gpu.ok()) << gpu.status().message();
    for (DType src : {DType::kF32, DType::kBF16, DType::kF16}) {
      auto bytes = std::make_unique<std::vector<uint8_t>>(DTypeBytes(src, n));
      ASSERT_TRUE(ConvertElements(values.data(), DType::kF32, bytes->data(), src, n).ok());
      // What the device should hold: src-rounded, then act-rounded.
      std::vector<float> want(n);
      ASSERT_TRUE(ConvertElements(bytes->data(), src, want.data(), DType::kF32, n).ok());
      std::vector<uint8_t> tmp(DTypeBytes(act, n));
      ASSERT_TRUE(ConvertElements(want.data(), DType::kF32, tmp.data(), act, n).ok());
      ASSERT_TRUE(ConvertElements(tmp.data(), act, want.data(), DType::kF32, n).ok());
      auto w = (*gpu)->UploadWeight(bytes->data(), src, rows, cols);
      ASSERT_TRUE(w.ok()) << w.status().message();
      std::memset(bytes->data(), 0xFF, bytes->size());  // a late read of the source would see NaNs
      bytes.reset();
      std::vector<float> got(n);
      ASSERT_TRUE((*gpu)->CopyToHostF32(got.data(), w->w).ok());
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
      EXPECT_EQ(bad, 0) << DTypeName(src) << " -> " << DTypeName(act);
      (*gpu)->Free(w->w.data);
    }
  }
}

}  // namespace
}  // namespace kiln
