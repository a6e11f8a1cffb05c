#include "backend/backend.h"

#include <cmath>
#include <vector>

namespace kiln {

void Backend::ArgmaxRows(Tensor ids, const Tensor& logits) {
  const int64_t n = logits.rows(), V = logits.cols();
  std::vector<float> host(static_cast<size_t>(n * V));
  std::vector<int32_t> out(static_cast<size_t>(n), 0);
  if (CopyToHostF32(host.data(), logits).ok()) {
    for (int64_t r = 0; r < n; ++r) {
      const float* row = host.data() + r * V;
      float best = -INFINITY;
      int64_t best_i = -1;
      for (int64_t j = 0; j < V; ++j) {
        const float v = std::isnan(row[j]) ? -INFINITY : row[j];
        if (best_i < 0 || v > best) {
          best = v;
          best_i = j;
        }
      }
      out[r] = static_cast<int32_t>(best_i < 0 ? 0 : best_i);
    }
  }
  (void)CopyToDevice(ids.data, out.data(), out.size() * sizeof(int32_t));
}

void Backend::GatedLinear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias, Activation act,
                          Tensor gate_up) {
  Linear(gate_up, x, w, bias);
  GatedActivation(out, gate_up, act);
}

void Backend::LinearResidual(Tensor residual, const Tensor& x, const Weight& w, const Tensor& bias, Tensor scratch) {
  Linear(scratch, x, w, bias);
  Add(residual, residual, scratch);
}

void Backend::NormLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w,
                         const Tensor& bias, Tensor h) {
  Norm(h, x, norm_w, Tensor(), eps, /*rms=*/true, /*unit_offset=*/false);
  Linear(out, h, w, bias);
}

void Backend::NormGatedLinear(Tensor out, const Tensor& x, const Tensor& norm_w, float eps, const Weight& w,
                              const Tensor& bias, Activation act, Tensor h, Tensor gate_up) {
  Norm(h, x, norm_w, Tensor(), eps, /*rms=*/true, /*unit_offset=*/false);
  GatedLinear(out, h, w, bias, act, gate_up);
}

Status Backend::ScaleWeightColumns(Weight&, const Tensor&) {
  return Unsupported(name() + ": ScaleWeightColumns is not implemented");
}

Expected<bool> Backend::ReplayGraph(uint64_t) { return false; }

Status Backend::CaptureGraph(uint64_t, const std::function<Status()>&) {
  return Unsupported(name() + ": step graphs are not supported");
}

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
