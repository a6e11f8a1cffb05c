// CPU reference backend: f32 activations, f32 weights (f16/bf16 engine weights are widened
// exactly at load), fp32 accumulation, OpenMP over rows/tokens/heads.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.h"

namespace kiln {

// backend_moe.cpp: the one routing rule every backend must match.
void MoeRouteHost(const float* logits, int64_t n, int64_t n_experts, int k, bool renormalize, int32_t* ids,
                  float* weights);

namespace {

inline float ApplyAct(float x, Backend::Activation a) {
  switch (a) {
    case Backend::Activation::kSilu: return x / (1.0f + std::exp(-x));
    case Backend::Activation::kGeluTanh: {
      const float c = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
    }
    case Backend::Activation::kGeluErf: return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
    case Backend::Activation::kRelu: return x > 0 ? x : 0.0f;
  }
  return x;
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu (" + std::to_string(omp_get_max_threads()) + " threads)"; }
  DType act_dtype() const override { return DType::kF32; }

  Expected<void*> Alloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
    if (!p) return Status(ErrorCode::kOutOfMemory, "cpu: cannot allocate " + std::to_string(bytes) + " bytes");
    return p;
  }
  void Free(void* p) override { std::free(p); }
  Status CopyToDevice(void* dst, const void* src, size_t n) override {
    std::memcpy(dst, src, n);
    return Status::Ok();
  }
  Status CopyToHost(void* dst, const void* src, size_t n) override {
    std::memcpy(dst, src, n);
    return Status::Ok();
  }
  Status CopyToHostF32(float* dst, const Tensor& src) override {
    return ConvertElements(src.data, src.dtype, dst, DType::kF32, src.numel());
  }
  Status Synchronize() override { return Status::Ok(); }

  Expected<Weight> UploadWeight(const void* src, DType src_dtype, int64_t rows, int64_t cols) override {
    KILN_ASSIGN_OR_RETURN(void* p, Alloc(sizeof(float) * rows * cols));
    Status st = ConvertElements(src, src_dtype, p, DType::kF32, rows * cols);
    if (!st.ok()) {
      Free(p);
      return st;
    }
    Weight w;
    w.w = Tensor(p, DType::kF32, {rows, cols});
    return w;
  }
  Expected<Weight> RandomWeight(DType, int64_t rows, int64_t cols, uint64_t seed, float scale) override {
    KILN_ASSIGN_OR_RETURN(void* p, Alloc(sizeof(float) * rows * cols));
    float* f = static_cast<float*>(p);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> dist(-scale, scale);
    for (int64_t i = 0; i < rows * cols; ++i) f[i] = dist(rng);
    Weight w;
    w.w = Tensor(p, DType::kF32, {rows, cols});
    return w;
  }

  void Embedding(Tensor out, const Weight& table, const Tensor& ids, float scale) override {
    const int64_t n = ids.numel(), d = table.w.dim(1);
    const int32_t* id = ids.ptr<int32_t>();
    const float* t = table.w.ptr<float>();
    float* o = out.ptr<float>();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) o[i * d + j] = t[static_cast<int64_t>(id[i]) * d + j] * scale;
  }

  void Norm(Tensor out, const Tensor& x, const Tensor& w, const Tensor& b, float eps, bool rms,
            bool unit_offset) override {
    NormRows(out.ptr<float>(), x.ptr<float>(), w, b, eps, rms, unit_offset, x.rows(), x.cols());
  }

  void AddNorm(Tensor out, Tensor residual, const Tensor& delta, const Tensor& w, const Tensor& b, float eps,
               bool rms, bool unit_offset) override {
    float* r = residual.ptr<float>();
    const float* dl = delta.ptr<float>();
    const int64_t n = residual.numel();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) r[i] += dl[i];
    NormRows(out.ptr<float>(), r, w, b, eps, rms, unit_offset, residual.rows(), residual.cols());
  }

  void Linear(Tensor out, const Tensor& x, const Weight& w, const Tensor& bias) override {
    const int64_t m = x.rows(), k = x.cols(), n = w.w.dim(0);
    const float* xp = x.ptr<float>();
    const float* wp = w.w.ptr<float>();
    const float* bp = bias.empty() ? nullptr : bias.ptr<float>();
    float* op = out.ptr<float>();
    // Blocked over output features so each weight row is streamed once per 4 tokens.
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      for (int64_t i0 = 0; i0 < m; i0 += 4) {
        const int64_t j1 = std::min(n, j0 + 16), i1 = std::min(m, i0 + 4);
        for (int64_t j = j0; j < j1; ++j) {
          const float* wr = wp + j * k;
          for (int64_t i = i0; i < i1; ++i) {
            const float* xr = xp + i * k;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t t = 0; t < k; ++t) acc += xr[t] * wr[t];
            op[i * n + j] = acc + (bp ? bp[j] : 0.0f);
          }
        }
      }
    }
  }

  void RopeWriteKv(Tensor qkv, const AttentionBatch& batch, const AttentionShape& s, const RopeSpec& rope,
                   const Tensor& q_norm, const Tensor& k_norm, float norm_eps, KvCacheLayer cache) override {
    const int hd = s.head_dim, hq = s.n_heads, hkv = s.n_kv_heads;
    const int64_t row = static_cast<int64_t>(hq + 2 * hkv) * hd;
    const int32_t* pos = batch.positions.ptr<int32_t>();
    const int32_t* slots = batch.slot_mapping.ptr<int32_t>();
    float* base = qkv.ptr<float>();
    float* kc = cache.k.ptr<float>();
    float* vc = cache.v.ptr<float>();
#pragma omp parallel for
    for (int64_t t = 0; t < batch.n_tokens; ++t) {
      float* r = base + t * row;
      for (int h = 0; h < hq + hkv; ++h) {
        float* head = r + static_cast<int64_t>(h) * hd;
        const Tensor& nw = h < hq ? q_norm : k_norm;
        if (!nw.empty()) NormRows(head, head, nw, Tensor(), norm_eps, true, false, 1, hd);
        if (rope.rotary_dim > 0) ApplyRope(head, pos[t], rope);
      }
      const int64_t slot = slots[t];
      const int64_t kv_row = static_cast<int64_t>(hkv) * hd;
      std::memcpy(kc + slot * kv_row, r + static_cast<int64_t>(hq) * hd, sizeof(float) * kv_row);
      std::memcpy(vc + slot * kv_row, r + static_cast<int64_t>(hq + hkv) * hd, sizeof(float) * kv_row);
    }
  }

  void Attention(Tensor out, const Tensor& qkv, const AttentionBatch& batch, const AttentionShape& s,
                 const AttentionParams& p, KvCacheLayer cache) override {
    const int hd = s.head_dim, hq = s.n_heads, hkv = s.n_kv_heads, group = hq / hkv;
    const int64_t row = static_cast<int64_t>(hq + 2 * hkv) * hd;
    const int64_t kv_row = static_cast<int64_t>(hkv) * hd;
    const int32_t* pos = batch.positions.ptr<int32_t>();
    const int32_t* qs = batch.q_start.ptr<int32_t>();
    const int32_t* bt = batch.block_tables.ptr<int32_t>();
    const float* kc = cache.k.ptr<float>();
    const float* vc = cache.v.ptr<float>();
    const float* slopes = p.alibi_slopes.empty() ? nullptr : p.alibi_slopes.ptr<float>();
    const float* q_all = qkv.ptr<float>();
    float* o = out.ptr<float>();
    const int bs = batch.block_size;
    // Token -> sequence lookup.
    std::vector<int> seq_of(batch.n_tokens);
    for (int sq = 0; sq < batch.n_seqs; ++sq)
      for (int t = qs[sq]; t < qs[sq + 1]; ++t) seq_of[t] = sq;
#pragma omp parallel
    {
      std::vector<float> scores(batch.max_seq_len + 1);
#pragma omp for collapse(2) schedule(dynamic)
      for (int64_t t = 0; t < batch.n_tokens; ++t) {
        for (int h = 0; h < hq; ++h) {
          const int sq = seq_of[t];
          const int32_t* table = bt + static_cast<int64_t>(sq) * batch.max_blocks_per_seq;
          const int last = pos[t];
          const int first = p.sliding_window > 0 ? std::max(0, last - p.sliding_window + 1) : 0;
          const float* q = q_all + t * row + static_cast<int64_t>(h) * hd;
          const int kvh = h / group;
          float mx = -INFINITY;
          for (int j = first; j <= last; ++j) {
            const float* k = kc + (static_cast<int64_t>(table[j / bs]) * bs + j % bs) * kv_row + kvh * hd;
            float dot = 0.0f;
            for (int d = 0; d < hd; ++d) dot += q[d] * k[d];
            float sc = dot * p.scale;
            if (p.softcap > 0.0f) sc = p.softcap * std::tanh(sc / p.softcap);
            if (slopes) sc += slopes[h] * static_cast<float>(j - last);
            scores[j - first] = sc;
            mx = std::max(mx, sc);
          }
          float sum = 0.0f;
          for (int j = first; j <= last; ++j) sum += (scores[j - first] = std::exp(scores[j - first] - mx));
          float* od = o + t * static_cast<int64_t>(hq) * hd + static_cast<int64_t>(h) * hd;
          for (int d = 0; d < hd; ++d) od[d] = 0.0f;
          for (int j = first; j <= last; ++j) {
            const float* v = vc + (static_cast<int64_t>(table[j / bs]) * bs + j % bs) * kv_row + kvh * hd;
            const float wgt = scores[j - first] / sum;
            for (int d = 0; d < hd; ++d) od[d] += wgt * v[d];
          }
        }
      }
    }
  }

  void GatedActivation(Tensor out, const Tensor& gate_up, Activation act) override {
    const int64_t n = gate_up.rows(), f = gate_up.cols() / 2;
    const float* g = gate_up.ptr<float>();
    float* o = out.ptr<float>();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < f; ++j) o[i * f + j] = ApplyAct(g[i * 2 * f + j], act) * g[i * 2 * f + f + j];
  }

  void ActivationInPlace(Tensor x, Activation act) override {
    float* p = x.ptr<float>();
    const int64_t n = x.numel();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) p[i] = ApplyAct(p[i], act);
  }

  void Add(Tensor out, const Tensor& a, const Tensor& b) override {
    const int64_t n = out.numel();
    const float *ap = a.ptr<float>(), *bp = b.ptr<float>();
    float* op = out.ptr<float>();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) op[i] = ap[i] + bp[i];
  }

  void GatherRows(Tensor out, const Tensor& x, const Tensor& idx) override {
    const int64_t m = idx.numel(), d = x.cols();
    const int32_t* ip = idx.ptr<int32_t>();
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(out.ptr<float>() + i * d, x.ptr<float>() + static_cast<int64_t>(ip[i]) * d, sizeof(float) * d);
  }

  void Softcap(Tensor x, float cap) override {
    float* p = x.ptr<float>();
    const int64_t n = x.numel();
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) p[i] = cap * std::tanh(p[i] / cap);
  }

  void MoeRoute(Tensor ids, Tensor weights, const Tensor& router_logits, int k, bool renormalize) override {
    MoeRouteHost(router_logits.ptr<float>(), router_logits.rows(), router_logits.cols(), k, renormalize,
                 ids.ptr<int32_t>(), weights.ptr<float>());
  }

  void MoeExperts(Tensor out, const Tensor& x, const std::vector<Weight>& gate_up, const std::vector<Weight>& down,
                  const Tensor& ids, const Tensor& weights, Activation act) override {
    const int64_t n = x.rows(), d = x.cols(), k = ids.cols();
    if (down.empty()) return;
    const int64_t f = down[0].w.dim(1);
    const int32_t* id = ids.ptr<int32_t>();
    const float* wt = weights.ptr<float>();
    const float* xp = x.ptr<float>();
    float* op = out.ptr<float>();
#pragma omp parallel
    {
      std::vector<float> gu(2 * f), a(f);  // one token's [gate | up] and activated [f]
#pragma omp for
      for (int64_t t = 0; t < n; ++t) {
        float* o = op + t * d;
        std::fill(o, o + d, 0.0f);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t e = id[t * k + j];
          const float* g = gate_up[e].w.ptr<float>();
          const float* dn = down[e].w.ptr<float>();
          for (int64_t r = 0; r < 2 * f; ++r) {
            float acc = 0.0f;
            for (int64_t c = 0; c < d; ++c) acc += g[r * d + c] * xp[t * d + c];
            gu[r] = acc;
          }
          for (int64_t r = 0; r < f; ++r) a[r] = ApplyAct(gu[r], act) * gu[f + r];
          for (int64_t r = 0; r < d; ++r) {
            float acc = 0.0f;
            for (int64_t c = 0; c < f; ++c) acc += dn[r * f + c] * a[c];
            o[r] += wt[t * k + j] * acc;
          }
        }
      }
    }
  }

 private:
  static void NormRows(float* out, const float* x, const Tensor& w, const Tensor& b, float eps, bool rms,
                       bool unit_offset, int64_t rows, int64_t cols) {
    const float* wp = w.empty() ? nullptr : w.ptr<float>();  // none: unit weight
    const float* bp = b.empty() ? nullptr : b.ptr<float>();
#pragma omp parallel for if (rows > 1)
    for (int64_t i = 0; i < rows; ++i) {
      const float* xr = x + i * cols;
      float* orow = out + i * cols;
      float mean = 0.0f;
      if (!rms) {
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) s += xr[j];
        mean = static_cast<float>(s / cols);
      }
      double ss = 0.0;
      for (int64_t j = 0; j < cols; ++j) {
        const double c = xr[j] - mean;
        ss += c * c;
      }
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / cols) + eps);
      for (int64_t j = 0; j < cols; ++j) {
        const float g = wp ? (unit_offset ? 1.0f + wp[j] : wp[j]) : 1.0f;
        orow[j] = (xr[j] - mean) * inv * g + (bp ? bp[j] : 0.0f);
      }
    }
  }

  static void ApplyRope(float* head, int pos, const RopeSpec& rope) {
    const int half = rope.rotary_dim / 2;
    const float* inv = rope.inv_freq.ptr<float>();
    for (int i = 0; i < half; ++i) {
      const double ang = static_cast<double>(pos) * inv[i];
      const float c = static_cast<float>(std::cos(ang)) * rope.attention_factor;
      const float sn = static_cast<float>(std::sin(ang)) * rope.attention_factor;
      const int a = rope.interleaved ? 2 * i : i;
      const int b = rope.interleaved ? 2 * i + 1 : i + half;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * sn;
      head[b] = x1 * c + x0 * sn;
    }
  }
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend() { return std::make_unique<CpuBackend>(); }

}  // namespace kiln
