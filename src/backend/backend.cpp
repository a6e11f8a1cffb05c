#include "backend/backend.h"

namespace kiln {

Expected<double> Backend::MeasureCopyBandwidth(size_t) {
  return Unsupported(name() + ": copy bandwidth measurement is not implemented");
}

Expected<DeviceBuffer> AllocBuffer(Backend& b, size_t bytes) {
  KILN_ASSIGN_OR_RETURN(void* p, b.Alloc(bytes));
  return DeviceBuffer(&b, p, bytes);
}

#ifndef KILN_WITH_CUDA
Expected<std::unique_ptr<Backend>> MakeCudaBackend(int, DType) {
  return Unsupported("this kiln was built without the CUDA backend (nvcc was not found at build time)");
}
bool CudaAvailable() { return false; }
#endif

}  // namespace kiln
