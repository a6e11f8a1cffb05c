#include "engine_flags.h"

#include <chrono>

#include "command.h"

namespace kiln::cli {

SamplingParams SamplingFlags::Resolve() const {
  SamplingParams p = params;
  if (!seed_given)
    p.seed = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  CheckOk(p.Validate());
  return p;
}

std::unique_ptr<Engine> OpenEngineOrFail(const EngineFlags& flags) {
  return ValueOrFail(Engine::Open(flags.engine_dir, flags.options));
}

}  // namespace kiln::cli
