// The C++ API in a dozen lines: open an engine, stream a greedy continuation.
//   build/example_generate ENGINE_DIR "Once upon a time"
#include <cstdio>
#include <string>

#include "kiln/engine.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ENGINE_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  auto engine = kiln::Engine::Open(argv[1]);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().message().c_str());
    return 1;
  }
  auto prompt = (*engine)->Encode(argc > 2 ? argv[2] : "Once upon a time", /*add_special=*/true);
  if (!prompt.ok()) {
    std::fprintf(stderr, "error: %s\n", prompt.status().message().c_str());
    return 1;
  }
  kiln::GenerateOptions options;
  options.max_tokens = 64;
  options.sampling.temperature = 0;  // greedy
  auto result = (*engine)->Generate(*prompt, options, [](int32_t, std::string_view delta) {
    std::fwrite(delta.data(), 1, delta.size(), stdout);
    std::fflush(stdout);
    return true;  // false would cancel
  });
  if (!result.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", result.status().message().c_str());
    return 1;
  }
  std::printf("\n[%zu tokens, finish: %s, %.1f tokens/s on %s]\n", result->tokens.size(),
              result->finish_reason.c_str(), result->decode_tokens_per_s, (*engine)->device_name().c_str());
  return 0;
}
