// Element types kiln stores and computes with, and scalar conversions.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "kiln/status.h"

namespace kiln {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kI8, kI4, kI32, kI64, kU8, kF64 };

// Bytes per element; 0 for packed sub-byte types (kI4: two per byte).
size_t DTypeSize(DType t);
// Storage bytes of n elements (handles kI4 packing).
size_t DTypeBytes(DType t, int64_t n);
std::string_view DTypeName(DType t);           // "f32", "bf16", ...
std::string_view SafetensorsDTypeName(DType t);  // "F32", "BF16", ...
Expected<DType> ParseDType(std::string_view name);            // "f32" | "f16" | "bf16" | ...
Expected<DType> ParseSafetensorsDType(std::string_view name);  // "F32" | "F16" | ...

inline float BF16ToF32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t F32ToBF16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even, saturating to inf

// Converts n elements between f32/f16/bf16 (and f64 -> f32) buffers.
Status ConvertElements(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

}  // namespace kiln
