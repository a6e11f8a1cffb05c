#include "runtime/open_backend.h"

#include <cstdio>
#include <cstdlib>

namespace kiln {

std::string ResolveDevice(const std::string& device) {
  if (device == "auto") return CudaAvailable() ? "cuda" : "cpu";
  return device;
}

Expected<std::unique_ptr<Backend>> OpenBackend(const std::string& device, DType engine_dtype, bool f32_activations) {
  if (device == "cpu") return MakeCpuBackend();
  if (device == "cuda" || (device.rfind("cuda:", 0) == 0 && device.size() > 5))
    return MakeCudaBackend(device == "cuda" ? 0 : std::atoi(device.c_str() + 5),
                           f32_activations ? DType::kF32 : engine_dtype);
  return InvalidArgument("unknown device '" + device + "' (--device expects auto, cpu, cuda or cuda:N)");
}

Model::Progress StderrLoadProgress(bool show) {
  if (!show) return {};
  return [](size_t done, size_t total) {
    std::fprintf(stderr, "\rkiln: loading weights %zu/%zu", done, total);
    if (done == total) std::fprintf(stderr, "\n");
  };
}

}  // namespace kiln
