// libFuzzer target: ParseGguf (and the llama conversion on what parses) on arbitrary bytes must
// return a Status, never crash; accepted tensors must lie inside the input and the metadata
// must be dumpable JSON (valid UTF-8).
#include <cstddef>
#include <cstdint>

#include "format/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = kiln::ParseGguf(data, size, "fuzz.gguf");
  if (!f.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const auto& t : f->tensors())
    if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
  (void)f->metadata().dump();  // throws (-> crash report) on invalid UTF-8
  auto ck = kiln::GgufToCheckpoint(*f);
  if (ck.ok()) {
    (void)ck->config.dump();
    for (const auto& t : ck->tensors)
      if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
  }
  return 0;
}
