#include "model/model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "format/safetensors.h"

namespace kiln {
namespace {

// Standard ALiBi slopes (Press et al.), as BLOOM and Baichuan-13B use them.
std::vector<float> AlibiSlopes(int64_t n_heads) {
  int64_t closest = 1;
  while (closest * 2 <= n_heads) closest *= 2;
  std::vector<float> s;
  const double base = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(closest)) - 3)));
  for (int64_t i = 1; i <= closest; ++i) s.push_back(static_cast<float>(std::pow(base, static_cast<double>(i))));
  if (closest < n_heads) {
    const double extra = std::pow(2.0, -std::pow(2.0, -(std::log2(2.0 * closest) - 3)));
    for (int64_t i = 0; i < n_heads - closest; ++i)
      s.push_back(static_cast<float>(std::pow(extra, static_cast<double>(1 + 2 * i))));
  }
  return s;
}

Backend::Activation ActivationOf(const std::string& a) {
  if (a == "gelu_tanh") return Backend::Activation::kGeluTanh;
  if (a == "gelu") return Backend::Activation::kGeluErf;
  if (a == "relu") return Backend::Activation::kRelu;
  return Backend::Activation::kSilu;
}

// Where weights come from: a real safetensors file or a seeded generator.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool Has(const std::string& name) const = 0;
  virtual Expected<Weight> Matrix(const std::string& name, int64_t rows, int64_t cols) = 0;
  virtual Expected<std::vector<float>> Vector(const std::string& name, int64_t n, float dummy_value) = 0;
};

class FileSource final : public WeightSource {
 public:
  FileSource(SafetensorsFile f, Backend& b) : file_(std::move(f)), backend_(b) {}
  bool Has(const std::string& name) const override { return file_.Find(name) != nullptr; }
  Expected<Weight> Matrix(const std::string& name, int64_t rows, int64_t cols) override {
    KILN_ASSIGN_OR_RETURN(const TensorInfo* t, Get(name, {rows, cols}));
    return backend_.UploadWeight(t->data, t->dtype, rows, cols);
  }
  Expected<std::vector<float>> Vector(const std::string& name, int64_t n, float) override {
    KILN_ASSIGN_OR_RETURN(const TensorInfo* t, Get(name, {n}));
    std::vector<float> v(n);
    KILN_RETURN_IF_ERROR(ConvertElements(t->data, t->dtype, v.data(), DType::kF32, n).With("tensor '" + name + "'"));
    return v;
  }

 private:
  Expected<const TensorInfo*> Get(const std::string& name, std::vector<int64_t> shape) {
    const TensorInfo* t = file_.Find(name);
    if (!t) return NotFound("'" + file_.path() + "' has no tensor '" + name + "'");
    if (t->shape != shape)
      return InvalidArgument("'" + file_.path() + "': tensor '" + name + "' has shape " + ShapeString(t->shape) +
                             ", the config needs " + ShapeString(shape));
    return t;
  }
  SafetensorsFile file_;
  Backend& backend_;
};

class DummySource final : public WeightSource {
 public:
  DummySource(const ModelConfig& c, DType dtype, uint64_t seed, Backend& b) : c_(c), dtype_(dtype), seed_(seed), b_(b) {}
  bool Has(const std::string& name) const override {
    // Dummy engines carry exactly what the config implies: no LM-head bias (of the supported
    // architectures only Phi has one, and a zero bias changes nothing but the step time) and an
    // embedding norm only where the architecture has one (BLOOM).
    if (name.find("lm_head.weight") != std::string::npos) return !c_.tie_embeddings;
    if (name.find("lm_head.bias") != std::string::npos) return false;
    if (name.find("embed_norm.") != std::string::npos) return c_.architecture == "bloom";
    return true;
  }
  Expected<Weight> Matrix(const std::string& name, int64_t rows, int64_t cols) override {
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    return b_.RandomWeight(dtype_, rows, cols, seed_ + std::hash<std::string>{}(name), scale);
  }
  Expected<std::vector<float>> Vector(const std::string&, int64_t n, float dummy_value) override {
    return std::vector<float>(n, dummy_value);
  }

 private:
  const ModelConfig& c_;
  DType dtype_;
  uint64_t seed_;
  Backend& b_;
};

}  // namespace

Model::~Model() = default;

Expected<std::unique_ptr<Model>> Model::Load(const std::string& engine_dir, Backend& backend,
                                             const Progress& progress) {
  std::unique_ptr<Model> m(new Model(backend));
  KILN_ASSIGN_OR_RETURN(m->config_, ReadEngineConfig(engine_dir));
  if (m->config_.tp != 1 || m->config_.pp != 1)
    return Unsupported("engine '" + engine_dir + "' is sharded for tp=" + std::to_string(m->config_.tp) +
                       ", pp=" + std::to_string(m->config_.pp) + "; load it with one process per rank");
  const auto t0 = std::chrono::steady_clock::now();
  KILN_RETURN_IF_ERROR(m->LoadWeights(engine_dir, progress));  // ends with a synchronize
  m->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (progress)
    std::fprintf(stderr, "kiln: %s %.2f GB of weights in %.2f s (%.1f GB/s) on %s\n",
                 m->config_.dummy_weights ? "generated" : "loaded", m->weight_bytes_ / 1e9, m->load_seconds_,
                 m->weight_bytes_ / 1e9 / std::max(m->load_seconds_, 1e-9), backend.name().c_str());
  KILN_RETURN_IF_ERROR(m->UpdateRope(0));
  return m;
}

Status Model::LoadWeights(const std::string& engine_dir, const Progress& progress) {
  const ModelConfig& c = config_.model;
  std::unique_ptr<WeightSource> src;
  if (config_.dummy_weights) {
    src = std::make_unique<DummySource>(c, config_.dtype, config_.dummy_seed, backend_);
  } else {
    const std::string path = (std::filesystem::path(engine_dir) / "rank0.safetensors").string();
    KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    src = std::make_unique<FileSource>(std::move(file), backend_);
  }
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  const size_t total = 4 + c.n_layers;
  size_t done = 0;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, Weight* out) -> Status {
    KILN_ASSIGN_OR_RETURN(*out, src->Matrix(name, rows, cols));
    owned_.emplace_back(&backend_, out->w.data, out->w.nbytes());
    weight_bytes_ += out->w.nbytes();
    if (!out->scales.empty()) {
      owned_.emplace_back(&backend_, out->scales.data, out->scales.nbytes());
      weight_bytes_ += out->scales.nbytes();
    }
    return Status::Ok();
  };
  auto vector = [&](const std::string& name, int64_t n, float dummy, Tensor* out) -> Status {
    KILN_ASSIGN_OR_RETURN(auto v, src->Vector(name, n, dummy));
    KILN_ASSIGN_OR_RETURN(auto buf, AllocBuffer(backend_, n * sizeof(float)));
    KILN_RETURN_IF_ERROR(backend_.CopyToDevice(buf.get(), v.data(), n * sizeof(float)));
    *out = Tensor(buf.get(), DType::kF32, {n});
    weight_bytes_ += n * sizeof(float);
    owned_.push_back(std::move(buf));
    return Status::Ok();
  };
  auto optional_vector = [&](const std::string& name, int64_t n, float dummy, Tensor* out, bool wanted) -> Status {
    if (!wanted || !src->Has(name)) return Status::Ok();
    return vector(name, n, dummy, out);
  };
  const float norm_one = c.norm_unit_offset ? 0.0f : 1.0f;
  const bool layer_norm = c.norm == "layer";

  KILN_RETURN_IF_ERROR(matrix("embed.weight", c.vocab_size, d, &embed_));
  if (c.position == "learned") {
    Weight pe;
    KILN_RETURN_IF_ERROR(matrix("pos_embed.weight", c.max_position_embeddings, d, &pe));
    pos_embed_ = pe.w;
  }
  KILN_RETURN_IF_ERROR(optional_vector("embed_norm.weight", d, 1.0f, &embed_norm_w_, true));
  KILN_RETURN_IF_ERROR(optional_vector("embed_norm.bias", d, 0.0f, &embed_norm_b_, layer_norm));
  if (progress) progress(++done, total);

  layers_.resize(c.n_layers);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& L = layers_[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    KILN_RETURN_IF_ERROR(vector(p + "attn_norm.weight", d, norm_one, &L.attn_norm_w));
    KILN_RETURN_IF_ERROR(optional_vector(p + "attn_norm.bias", d, 0.0f, &L.attn_norm_b, layer_norm));
    KILN_RETURN_IF_ERROR(matrix(p + "attn.qkv.weight", c.qkv_dim(), d, &L.qkv));
    KILN_RETURN_IF_ERROR(optional_vector(p + "attn.qkv.bias", c.qkv_dim(), 0.0f, &L.qkv_bias, c.qkv_bias));
    if (c.qk_norm) {
      KILN_RETURN_IF_ERROR(vector(p + "attn.q_norm.weight", hd, 1.0f, &L.q_norm));
      KILN_RETURN_IF_ERROR(vector(p + "attn.k_norm.weight", hd, 1.0f, &L.k_norm));
    }
    KILN_RETURN_IF_ERROR(matrix(p + "attn.o.weight", d, c.q_dim(), &L.o));
    KILN_RETURN_IF_ERROR(optional_vector(p + "attn.o.bias", d, 0.0f, &L.o_bias, c.o_bias));
    KILN_RETURN_IF_ERROR(optional_vector(p + "post_attn_norm.weight", d, norm_one, &L.post_attn_norm_w,
                                         !config_.dummy_weights));
    KILN_RETURN_IF_ERROR(optional_vector(p + "mlp_norm.weight", d, norm_one, &L.mlp_norm_w,
                                         !(c.parallel_residual && config_.dummy_weights)));
    KILN_RETURN_IF_ERROR(optional_vector(p + "mlp_norm.bias", d, 0.0f, &L.mlp_norm_b, layer_norm));
    if (!c.parallel_residual && L.mlp_norm_w.empty())
      return NotFound("engine has no tensor '" + p + "mlp_norm.weight'");
    const bool gated = c.mlp == "gated";
    const std::string up = gated ? "mlp.gate_up" : "mlp.up";
    if (c.n_experts > 0) {
      KILN_RETURN_IF_ERROR(matrix(p + "mlp.router.weight", c.n_experts, d, &L.router));
      L.expert_gate_up.resize(c.n_experts);
      L.expert_down.resize(c.n_experts);
      for (int64_t e = 0; e < c.n_experts; ++e) {
        const std::string pe = p + "mlp.experts." + std::to_string(e) + ".";
        KILN_RETURN_IF_ERROR(matrix(pe + "gate_up.weight", 2 * f, d, &L.expert_gate_up[e]));
        KILN_RETURN_IF_ERROR(matrix(pe + "down.weight", d, f, &L.expert_down[e]));
      }
    } else {
      KILN_RETURN_IF_ERROR(matrix(p + up + ".weight", gated ? 2 * f : f, d, &L.gate_up));
      KILN_RETURN_IF_ERROR(optional_vector(p + up + ".bias", gated ? 2 * f : f, 0.0f, &L.gate_up_bias, c.mlp_bias));
      KILN_RETURN_IF_ERROR(matrix(p + "mlp.down.weight", d, f, &L.down));
      KILN_RETURN_IF_ERROR(optional_vector(p + "mlp.down.bias", d, 0.0f, &L.down_bias, c.mlp_bias));
    }
    KILN_RETURN_IF_ERROR(optional_vector(p + "post_mlp_norm.weight", d, norm_one, &L.post_mlp_norm_w,
                                         !config_.dummy_weights));
    if (progress) progress(++done, total);
  }
  KILN_RETURN_IF_ERROR(vector("final_norm.weight", d, norm_one, &final_norm_w_));
  KILN_RETURN_IF_ERROR(optional_vector("final_norm.bias", d, 0.0f, &final_norm_b_, layer_norm));
  if (c.tie_embeddings) {
    lm_head_ = embed_;
  } else {
    KILN_RETURN_IF_ERROR(matrix("lm_head.weight", c.vocab_size, d, &lm_head_));
  }
  KILN_RETURN_IF_ERROR(optional_vector("lm_head.bias", c.vocab_size, 0.0f, &lm_head_bias_, true));
  if (c.position == "alibi") {
    auto slopes = AlibiSlopes(c.n_heads);
    KILN_ASSIGN_OR_RETURN(auto buf, AllocBuffer(backend_, slopes.size() * sizeof(float)));
    KILN_RETURN_IF_ERROR(backend_.CopyToDevice(buf.get(), slopes.data(), slopes.size() * sizeof(float)));
    alibi_slopes_ = Tensor(buf.get(), DType::kF32, {c.n_heads});
    owned_.push_back(std::move(buf));
  }
  KILN_RETURN_IF_ERROR(FoldNormWeights());
  if (progress) progress(total, total);
  return backend_.Synchronize();
}

Status Model::FoldNormWeights() {
  const ModelConfig& c = config_.model;
  const bool rms = c.norm == "rms" && !c.norm_unit_offset;
  for (LayerWeights& L : layers_) {
    L.pre_norm = rms && !c.parallel_residual && c.n_experts == 0 && L.attn_norm_b.empty() && L.mlp_norm_b.empty() &&
                 !L.mlp_norm_w.empty() && L.post_attn_norm_w.empty() && L.post_mlp_norm_w.empty();
    if (!L.pre_norm || !backend_.FoldsNormWeights() || !L.qkv.scales.empty() || !L.gate_up.scales.empty()) continue;
    // W (norm_w * x_hat) = (W diag(norm_w)) x_hat: the projection's kernel can then normalise x
    // on the fly with no norm pass of its own.
    KILN_RETURN_IF_ERROR(backend_.ScaleWeightColumns(L.qkv, L.attn_norm_w));
    KILN_RETURN_IF_ERROR(backend_.ScaleWeightColumns(L.gate_up, L.mlp_norm_w));
    L.attn_norm_w = Tensor();
    L.mlp_norm_w = Tensor();
  }
  return Status::Ok();
}

Status Model::UpdateRope(int64_t seq_len) {
  const ModelConfig& c = config_.model;
  if (c.position != "rope") return Status::Ok();
  // Only dynamic NTK scaling depends on the length; recompute only when it changes.
  const bool dynamic = c.rope_scaling.type == "dynamic";
  if (rope_len_ >= 0 && (!dynamic || seq_len == rope_len_)) return Status::Ok();
  float af = 1.0f;
  auto inv = RopeInvFreq(c, seq_len, &af);
  if (rope_.inv_freq.empty()) {
    KILN_ASSIGN_OR_RETURN(auto buf, AllocBuffer(backend_, inv.size() * sizeof(float)));
    rope_.inv_freq = Tensor(buf.get(), DType::kF32, {static_cast<int64_t>(inv.size())});
    owned_.push_back(std::move(buf));
  }
  KILN_RETURN_IF_ERROR(backend_.CopyToDevice(rope_.inv_freq.data, inv.data(), inv.size() * sizeof(float)));
  rope_.rotary_dim = static_cast<int>(c.effective_rotary_dim());
  rope_.interleaved = c.rope_interleaved;
  rope_.attention_factor = af;
  rope_len_ = seq_len;
  return Status::Ok();
}

Status Model::Reserve(int64_t max_tokens, int64_t max_logits) {
  if (max_tokens <= max_tokens_ && max_logits <= max_logits_) return Status::Ok();
  max_tokens_ = std::max(max_tokens, max_tokens_);
  max_logits_ = std::max(max_logits, max_logits_);
  ++reserve_epoch_;  // new scratch addresses: graphs recorded before are stale
  const ModelConfig& c = config_.model;
  const int64_t T = max_tokens_, L = max_logits_, d = c.hidden_size, f = c.intermediate_size;
  const int64_t sizes[] = {T * d, T * d, T * c.qkv_dim(), T * c.q_dim(), T * d, T * 2 * f, T * f, T * d, L * d,
                           L * c.vocab_size, T * d};
  scratch_.clear();
  for (int64_t n : sizes) {
    KILN_ASSIGN_OR_RETURN(auto buf, AllocBuffer(backend_, DTypeBytes(backend_.act_dtype(), n)));
    scratch_.push_back(std::move(buf));
  }
  if (c.n_experts > 0) {
    // 11: router logits [T, E] (act dtype); 12: expert ids [T, k] i32; 13: weights [T, k] f32.
    const int64_t k = c.n_experts_per_tok;
    const size_t bytes[] = {DTypeBytes(backend_.act_dtype(), T * c.n_experts), sizeof(int32_t) * T * k,
                            sizeof(float) * T * k};
    for (size_t n : bytes) {
      KILN_ASSIGN_OR_RETURN(auto buf, AllocBuffer(backend_, n));
      scratch_.push_back(std::move(buf));
    }
  }
  return Status::Ok();
}

Tensor Model::Scratch(size_t index, std::initializer_list<int64_t> dims) {
  return Tensor(scratch_[index].get(), backend_.act_dtype(), dims);
}

namespace {

// Decode steps up to this many sequences are recorded as graphs (KILN_GRAPH_MAX_BATCH); larger
// steps run long enough that launching op by op costs nothing measurable.
int64_t GraphMaxBatch() {
  static const int64_t n = [] {
    const char* e = std::getenv("KILN_GRAPH_MAX_BATCH");
    return e ? std::max<int64_t>(0, std::atoll(e)) : int64_t{64};
  }();
  return n;
}

// A graph replays a fixed launch shape, so the attention's length bound is rounded up to a
// power of two (>= 256): one graph per batch size serves a sequence as it grows.
int GraphLengthBucket(int len) {
  int b = 256;
  while (b < len) b *= 2;
  return b;
}

uint64_t Mix(uint64_t h, uint64_t v) { return (h ^ (v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2))) * 0xFF51AFD7ED558CCDull; }

}  // namespace

bool Model::GraphEligible(const StepInputs& in) const {
  const AttentionBatch& b = in.batch;
  return !graphs_failed_ && backend_.SupportsGraphs() && config_.model.n_experts == 0 && b.max_q_len == 1 &&
         b.n_tokens == b.n_seqs && b.n_tokens <= GraphMaxBatch();
}

Expected<Tensor> Model::Forward(const StepInputs& in, std::vector<KvCacheLayer>& cache) {
  const ModelConfig& c = config_.model;
  const int64_t T = in.batch.n_tokens, L = in.n_logits;
  if (T <= 0 || T > max_tokens_ || L > max_logits_)
    return InvalidArgument("step of " + std::to_string(T) + " tokens / " + std::to_string(L) +
                           " logits exceeds the reserved workspace (" + std::to_string(max_tokens_) + " / " +
                           std::to_string(max_logits_) + ")");
  if (static_cast<int64_t>(cache.size()) != c.n_layers) return Internal("KV cache has the wrong number of layers");
  KILN_RETURN_IF_ERROR(UpdateRope(in.batch.max_seq_len));  // a host copy: never inside a graph
  const Tensor logits = Scratch(9, {std::max<int64_t>(L, 1), c.vocab_size});
  if (!GraphEligible(in)) {
    Enqueue(in, cache);
    return logits.SliceRows(0, L);
  }
  StepInputs g = in;
  g.batch.max_seq_len = GraphLengthBucket(in.batch.max_seq_len);
  uint64_t key = 0;
  for (uint64_t v : {uint64_t(T), uint64_t(L), uint64_t(g.batch.n_seqs), uint64_t(g.batch.max_seq_len),
                     uint64_t(g.batch.block_size), uint64_t(g.batch.max_blocks_per_seq),
                     reinterpret_cast<uint64_t>(g.token_ids.data), reinterpret_cast<uint64_t>(g.logit_rows.data),
                     reinterpret_cast<uint64_t>(g.batch.positions.data),
                     reinterpret_cast<uint64_t>(g.batch.block_tables.data), reinterpret_cast<uint64_t>(cache[0].k.data),
                     uint64_t(cache[0].k.dim(0)), reserve_epoch_})
    key = Mix(key, v);
  KILN_ASSIGN_OR_RETURN(bool replayed, backend_.ReplayGraph(key));
  if (replayed) return logits.SliceRows(0, L);
  if (graph_seen_.insert(key).second) {
    // First sight of this shape: run it op by op (kernels do their one-time setup outside a
    // recording, and a shape seen only once is never recorded); record it the next time.
    Enqueue(g, cache);
    return logits.SliceRows(0, L);
  }
  Status st = backend_.CaptureGraph(key, [&] {
    Enqueue(g, cache);
    return Status::Ok();
  });
  if (!st.ok()) {
    // Recording failed (nothing ran): run this and every later step op by op.
    std::fprintf(stderr, "kiln: step graphs disabled: %s\n", st.message().c_str());
    graphs_failed_ = true;
    Enqueue(in, cache);
  } else {
    ++graphs_recorded_;
  }
  return logits.SliceRows(0, L);
}

void Model::Enqueue(const StepInputs& in, std::vector<KvCacheLayer>& cache) {
  const ModelConfig& c = config_.model;
  const int64_t T = in.batch.n_tokens, L = in.n_logits, d = c.hidden_size, f = c.intermediate_size;
  Backend& b = backend_;
  const bool rms = c.norm == "rms", off = c.norm_unit_offset;
  const float eps = static_cast<float>(c.norm_eps);
  Tensor x = Scratch(0, {T, d});             // residual stream
  Tensor h = Scratch(1, {T, d});             // normed input of a block
  Tensor qkv = Scratch(2, {T, c.qkv_dim()});
  Tensor attn = Scratch(3, {T, c.q_dim()});
  Tensor o = Scratch(4, {T, d});             // attention block output
  Tensor gu = Scratch(5, {T, c.mlp == "gated" ? 2 * f : f});
  Tensor act = Scratch(6, {T, f});
  Tensor dn = Scratch(7, {T, d});            // MLP block output
  Tensor hl = Scratch(8, {std::max<int64_t>(L, 1), d});
  Tensor logits = Scratch(9, {std::max<int64_t>(L, 1), c.vocab_size});
  Tensor tmp = Scratch(10, {T, d});

  b.Embedding(x, embed_, in.token_ids, static_cast<float>(c.embedding_scale));
  if (!pos_embed_.empty()) {
    Weight pe;
    pe.w = pos_embed_;
    b.Embedding(tmp, pe, in.batch.positions, 1.0f);
    b.Add(x, x, tmp);
  }
  if (!embed_norm_w_.empty()) b.Norm(x, x, embed_norm_w_, embed_norm_b_, eps, rms, off);

  const AttentionShape shape{static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads),
                             static_cast<int>(c.head_dim)};
  AttentionParams ap;
  ap.scale = c.attn_scale > 0 ? static_cast<float>(c.attn_scale) : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ap.softcap = static_cast<float>(c.attn_softcap);
  ap.alibi_slopes = alibi_slopes_;
  const Backend::Activation activation = ActivationOf(c.activation);
  const Tensor* pending = nullptr;  // block output not yet added to the residual stream

  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& Lw = layers_[i];
    ap.sliding_window = static_cast<int>(c.layer_window(i));
    // Pre-norm RMSNorm blocks (Llama, Qwen, Mistral, Phi-3, ...) go through the fusable ops: the
    // norm feeds its projection (NormLinear) and each block's output projection adds itself to
    // the residual stream (LinearResidual). The result equals the general path below.
    if (Lw.pre_norm) {
      if (pending) b.Add(x, x, *pending);
      pending = nullptr;
      b.NormLinear(qkv, x, Lw.attn_norm_w, eps, Lw.qkv, Lw.qkv_bias, h);
      b.RopeWriteKv(qkv, in.batch, shape, rope_, Lw.q_norm, Lw.k_norm, eps, cache[i]);
      b.Attention(attn, qkv, in.batch, shape, ap, cache[i]);
      b.LinearResidual(x, attn, Lw.o, Lw.o_bias, o);
      if (c.mlp == "gated") {
        b.NormGatedLinear(act, x, Lw.mlp_norm_w, eps, Lw.gate_up, Lw.gate_up_bias, activation, h, gu);
        b.LinearResidual(x, act, Lw.down, Lw.down_bias, dn);
      } else {
        b.NormLinear(gu, x, Lw.mlp_norm_w, eps, Lw.gate_up, Lw.gate_up_bias, h);
        b.ActivationInPlace(gu, activation);
        b.LinearResidual(x, gu, Lw.down, Lw.down_bias, dn);
      }
      continue;
    }
    if (pending) {
      b.AddNorm(h, x, *pending, Lw.attn_norm_w, Lw.attn_norm_b, eps, rms, off);
    } else {
      b.Norm(h, x, Lw.attn_norm_w, Lw.attn_norm_b, eps, rms, off);
    }
    b.Linear(qkv, h, Lw.qkv, Lw.qkv_bias);
    b.RopeWriteKv(qkv, in.batch, shape, rope_, Lw.q_norm, Lw.k_norm, eps, cache[i]);
    b.Attention(attn, qkv, in.batch, shape, ap, cache[i]);
    b.Linear(o, attn, Lw.o, Lw.o_bias);
    if (!Lw.post_attn_norm_w.empty()) b.Norm(o, o, Lw.post_attn_norm_w, Tensor(), eps, rms, off);

    const Tensor* mlp_in = &h;
    if (c.parallel_residual) {
      // x_next = x + attn(norm1(x)) + mlp(norm2(x) or norm1(x))
      if (!Lw.mlp_norm_w.empty()) {
        b.Norm(tmp, x, Lw.mlp_norm_w, Lw.mlp_norm_b, eps, rms, off);
        mlp_in = &tmp;
      }
    } else {
      b.AddNorm(h, x, o, Lw.mlp_norm_w, Lw.mlp_norm_b, eps, rms, off);
    }
    if (c.n_experts > 0) {
      const int64_t k = c.n_experts_per_tok;
      Tensor router_logits = Scratch(11, {T, c.n_experts});
      Tensor ids(scratch_[12].get(), DType::kI32, {T, k});
      Tensor weights(scratch_[13].get(), DType::kF32, {T, k});
      b.Linear(router_logits, *mlp_in, Lw.router, Tensor());
      b.MoeRoute(ids, weights, router_logits, static_cast<int>(k), c.moe_renormalize);
      b.MoeExperts(dn, *mlp_in, Lw.expert_gate_up, Lw.expert_down, ids, weights, activation);
    } else if (c.mlp == "gated") {
      b.GatedLinear(act, *mlp_in, Lw.gate_up, Lw.gate_up_bias, activation, gu);
      b.Linear(dn, act, Lw.down, Lw.down_bias);
    } else {
      b.Linear(gu, *mlp_in, Lw.gate_up, Lw.gate_up_bias);
      b.ActivationInPlace(gu, activation);
      b.Linear(dn, gu, Lw.down, Lw.down_bias);
    }
    if (!Lw.post_mlp_norm_w.empty()) b.Norm(dn, dn, Lw.post_mlp_norm_w, Tensor(), eps, rms, off);
    if (c.parallel_residual) b.Add(x, x, o);
    pending = &dn;
  }
  if (pending) {
    b.AddNorm(h, x, *pending, final_norm_w_, final_norm_b_, eps, rms, off);
  } else {
    b.Norm(h, x, final_norm_w_, final_norm_b_, eps, rms, off);
  }
  if (L == 0) return;
  Tensor hl_used = hl.SliceRows(0, L);
  Tensor logits_used = logits.SliceRows(0, L);
  b.GatherRows(hl_used, h, in.logit_rows);
  b.Linear(logits_used, hl_used, lm_head_, lm_head_bias_);
  if (c.final_softcap > 0) b.Softcap(logits_used, static_cast<float>(c.final_softcap));
}

}  // namespace kiln
