#include "core/dtype.h"

#include <cmath>

namespace kiln {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF16: case DType::kBF16: return 2;
    case DType::kF8E4M3: case DType::kI8: case DType::kU8: return 1;
    case DType::kI64: case DType::kF64: return 8;
    case DType::kI4: return 0;
  }
  return 0;
}

size_t DTypeBytes(DType t, int64_t n) {
  if (t == DType::kI4) return static_cast<size_t>((n + 1) / 2);
  return DTypeSize(t) * static_cast<size_t>(n);
}

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF8E4M3: return "fp8";
    case DType::kI8: return "int8";
    case DType::kI4: return "int4";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
    case DType::kF64: return "f64";
  }
  return "?";
}

std::string_view SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI8: return "I8";
    case DType::kI4: return "U8";  // packed nibbles are stored as bytes
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
    case DType::kF64: return "F64";
  }
  return "?";
}

Expected<DType> ParseDType(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32") return DType::kF32;
  if (name == "f16" || name == "float16" || name == "fp16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  if (name == "fp8" || name == "f8_e4m3") return DType::kF8E4M3;
  if (name == "int8" || name == "i8") return DType::kI8;
  if (name == "int4" || name == "i4") return DType::kI4;
  if (name == "i32" || name == "int32") return DType::kI32;
  if (name == "i64" || name == "int64") return DType::kI64;
  if (name == "u8" || name == "uint8") return DType::kU8;
  if (name == "f64" || name == "float64") return DType::kF64;
  return InvalidArgument("unknown dtype '" + std::string(name) + "' (expected f32, f16 or bf16)");
}

Expected<DType> ParseSafetensorsDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "F8_E4M3") return DType::kF8E4M3;
  if (name == "I8") return DType::kI8;
  if (name == "I32") return DType::kI32;
  if (name == "I64") return DType::kI64;
  if (name == "U8") return DType::kU8;
  if (name == "F64") return DType::kF64;
  return Unsupported("unsupported safetensors dtype '" + std::string(name) + "'");
}

float F16ToF32(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? std::nanf("") : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

uint16_t F32ToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t absu = u & 0x7fffffff;
  if (absu > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (absu >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (absu < 0x38800000) {  // subnormal or zero in f16
    float a;
    std::memcpy(&a, &absu, 4);
    // round to nearest even on the 2^-24 grid
    float scaled = a * 16777216.0f;  // 2^24
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t exp = ((absu >> 23) - 112) << 10;
  uint32_t mant = absu & 0x7fffff;
  uint32_t h = exp | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return static_cast<uint16_t>(sign | h);
}

Status ConvertElements(const void* src, DType st, void* dst, DType dt, int64_t n) {
  auto load = [&](int64_t i) -> float {
    switch (st) {
      case DType::kF32: return static_cast<const float*>(src)[i];
      case DType::kF16: return F16ToF32(static_cast<const uint16_t*>(src)[i]);
      case DType::kBF16: return BF16ToF32(static_cast<const uint16_t*>(src)[i]);
      case DType::kF64: return static_cast<float>(static_cast<const double*>(src)[i]);
      default: return 0.0f;
    }
  };
  if (st != DType::kF32 && st != DType::kF16 && st != DType::kBF16 && st != DType::kF64)
    return Unsupported("cannot convert from " + std::string(DTypeName(st)));
  if (st == dt) {
    std::memcpy(dst, src, DTypeBytes(st, n));
    return Status::Ok();
  }
  switch (dt) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = load(i);
      return Status::Ok();
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = F32ToF16(load(i));
      return Status::Ok();
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = F32ToBF16(load(i));
      return Status::Ok();
    default:
      return Unsupported("cannot convert to " + std::string(DTypeName(dt)));
  }
}

}  // namespace kiln
