// libFuzzer target: ParseLlama2c on arbitrary bytes must return a Status, never crash; every
// tensor it produces must lie inside the input (or its own converted buffer).
#include <cstddef>
#include <cstdint>

#include "format/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto ck = kiln::ParseLlama2c(data, size, "fuzz.bin");
  if (!ck.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const auto& t : ck->tensors) {
    if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    if (static_cast<size_t>(t.numel()) * 4 != t.nbytes) __builtin_trap();  // f32: sizes must agree
  }
  (void)ck->config.dump();
  return 0;
}
