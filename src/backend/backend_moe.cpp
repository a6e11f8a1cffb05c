// Generic (slow) sparse-MoE ops for any backend: routing on the host, experts through the
// existing GatherRows/Linear/GatedActivation ops, the weighted combine on the host. Correct
// but synchronizing; a backend overrides MoeRoute/MoeExperts with native kernels.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/backend.h"

namespace kiln {

// Host top-k routing shared with the CPU backend: probs = softmax(logits) (f32), the k
// largest (ties: lower id), optionally renormalised. logits [n, E]; ids/weights [n, k].
void MoeRouteHost(const float* logits, int64_t n, int64_t n_experts, int k, bool renormalize, int32_t* ids,
                  float* weights) {
  std::vector<float> p(n_experts);
  std::vector<int32_t> order(n_experts);
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * n_experts;
    const float mx = *std::max_element(l, l + n_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < n_experts; ++e) sum += (p[e] = std::exp(l[e] - mx));
    for (int64_t e = 0; e < n_experts; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    float chosen = 0.0f;
    for (int j = 0; j < k; ++j) chosen += p[order[j]];
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = order[j];
      weights[t * k + j] = renormalize ? p[order[j]] / chosen : p[order[j]];
    }
  }
}

void Backend::MoeRoute(Tensor ids, Tensor weights, const Tensor& router_logits, int k, bool renormalize) {
  const int64_t n = router_logits.rows(), e = router_logits.cols();
  std::vector<float> logits(n * e);
  std::vector<int32_t> host_ids(n * k);
  std::vector<float> host_w(n * k);
  // Ops have no status; a failed copy surfaces at the step's next blocking call.
  (void)CopyToHostF32(logits.data(), router_logits);
  MoeRouteHost(logits.data(), n, e, k, renormalize, host_ids.data(), host_w.data());
  (void)CopyToDevice(ids.data, host_ids.data(), host_ids.size() * sizeof(int32_t));
  (void)CopyToDevice(weights.data, host_w.data(), host_w.size() * sizeof(float));
}

void Backend::MoeExperts(Tensor out, const Tensor& x, const std::vector<Weight>& gate_up,
                         const std::vector<Weight>& down, const Tensor& ids, const Tensor& weights,
                         Activation act) {
  const int64_t n = x.rows(), d = x.cols(), k = ids.cols();
  if (gate_up.empty()) return;
  const int64_t f = down[0].w.dim(1);
  std::vector<int32_t> host_ids(n * k);
  std::vector<float> host_w(n * k);
  (void)CopyToHost(host_ids.data(), ids.data, host_ids.size() * sizeof(int32_t));
  (void)CopyToHost(host_w.data(), weights.data, host_w.size() * sizeof(float));
  const DType a = act_dtype();
  auto buffer = [&](int64_t elems, DType t) {
    return AllocBuffer(*this, DTypeBytes(t, std::max<int64_t>(elems, 1)));
  };
  auto idx_buf = buffer(n, DType::kI32), xe_buf = buffer(n * d, a), gu_buf = buffer(n * 2 * f, a),
       ae_buf = buffer(n * f, a), ye_buf = buffer(n * d, a);
  if (!idx_buf.ok() || !xe_buf.ok() || !gu_buf.ok() || !ae_buf.ok() || !ye_buf.ok()) return;
  std::vector<float> acc(n * d, 0.0f), ye_host(n * d);  // [n, d] f32 sum over chosen experts
  for (size_t e = 0; e < gate_up.size(); ++e) {
    std::vector<int32_t> rows;
    std::vector<float> w;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (host_ids[t * k + j] == static_cast<int32_t>(e)) {
          rows.push_back(static_cast<int32_t>(t));
          w.push_back(host_w[t * k + j]);
        }
    const int64_t m = static_cast<int64_t>(rows.size());
    if (m == 0) continue;
    (void)CopyToDevice(idx_buf->get(), rows.data(), m * sizeof(int32_t));
    Tensor idx(idx_buf->get(), DType::kI32, {m});
    Tensor xe(xe_buf->get(), a, {m, d}), gu(gu_buf->get(), a, {m, 2 * f}), ae(ae_buf->get(), a, {m, f}),
        ye(ye_buf->get(), a, {m, d});
    GatherRows(xe, x, idx);
    Linear(gu, xe, gate_up[e], Tensor());
    GatedActivation(ae, gu, act);
    Linear(ye, ae, down[e], Tensor());
    (void)CopyToHostF32(ye_host.data(), ye);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t c = 0; c < d; ++c) acc[rows[i] * d + c] += w[i] * ye_host[i * d + c];
  }
  std::vector<uint8_t> bytes(DTypeBytes(a, n * d));
  (void)ConvertElements(acc.data(), DType::kF32, bytes.data(), a, n * d);
  (void)CopyToDevice(out.data, bytes.data(), bytes.size());
  (void)Synchronize();  // the host buffers above die with this call
}

}  // namespace kiln
