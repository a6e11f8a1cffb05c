// libFuzzer target: SafetensorsFile::Parse on arbitrary bytes must return a Status, never crash,
// and every tensor it accepts must lie inside the input.
#include <cstddef>
#include <cstdint>

#include "format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = kiln::SafetensorsFile::Parse(data, size, "fuzz.safetensors");
  if (!f.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const auto& t : f->tensors()) {
    if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];  // ASan catches out-of-bounds spans
    // The byte count must be what dtype x shape needs (no wrap-around in 64-bit arithmetic).
    unsigned __int128 need = static_cast<unsigned __int128>(kiln::DTypeSize(t.dtype));
    for (auto d : t.shape) need *= static_cast<unsigned __int128>(d);
    if (need != t.nbytes) __builtin_trap();
  }
  for (const auto& [k, v] : f->metadata()) (void)f->Find(k);
  return 0;
}
