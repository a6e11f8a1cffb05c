// The sampler's random stream, shared verbatim by the CPU chain and the CUDA kernels so that
// draw n of a request is bit-identical on both: header-only, integer arithmetic only.
//
//   SplitMix64(x):  x += 0x9E3779B97F4A7C15
//                   x  = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
//                   x  = (x ^ (x >> 27)) * 0x94D049BB133111EB
//                   return x ^ (x >> 31)                      (all mod 2^64)
//   UniformDraw(seed, counter) = float(SplitMix64(SplitMix64(seed) ^ counter) >> 40) * 2^-24
//
// The top 24 bits of the hash become a float in [0, 1) exactly (a multiple of 2^-24, never 1).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define KILN_RNG_HD __host__ __device__
#else
#define KILN_RNG_HD
#endif

namespace kiln::rng {

KILN_RNG_HD constexpr uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// 24 random bits for draw `counter` of the stream `seed`.
KILN_RNG_HD constexpr uint32_t DrawBits(uint64_t seed, uint64_t counter) {
  return static_cast<uint32_t>(SplitMix64(SplitMix64(seed) ^ counter) >> 40);
}

KILN_RNG_HD constexpr float BitsToUnit(uint32_t bits24) {
  return static_cast<float>(bits24) * 0x1.0p-24f;  // exact: bits24 < 2^24
}

}  // namespace kiln::rng
