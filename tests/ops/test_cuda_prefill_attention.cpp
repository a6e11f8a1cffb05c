// The tensor-core prefill attention kernel (prefill_attention.cu) on long and ragged prefill
// batches against the CPU oracle: sequences up to 4096 tokens, GQA 4 and 8, several sequences
// packed in one step, chunked prefill (a chunk attending to its cached prefix plus the causal part
// of itself), block sizes 16 / 32 / 48 / 64, head dims 64 / 96 / 128 / 256, sliding window, softcap
// and ALiBi. bf16 and f16, relative L2 error <= 1e-2, outputs poisoned with NaN first.
// Skipped (with the reason) where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace kiln {
namespace {

#define KILN_REQUIRE_CUDA() \
  if (!::kiln::CudaAvailable()) GTEST_SKIP() << "no CUDA GPU: the CUDA op tests need one (CPU-only machine)"

struct Buf {
  DeviceBuffer mem;
  Tensor t;
};

Tensor MakeTensor(void* p, DType dt, const std::vector<int64_t>& shape) {
  Tensor t;
  t.data = p;
  t.dtype = dt;
  t.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
  return t;
}

int64_t Numel(const std::vector<int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<int64_t>());
}

Buf Upload(Backend& b, DType dt, const std::vector<int64_t>& shape, const std::vector<float>& host) {
  const int64_t n = Numel(shape);
  auto mem = AllocBuffer(b, std::max<size_t>(DTypeBytes(dt, n), 16));
  EXPECT_TRUE(mem.ok()) << mem.status().message();
  std::vector<uint8_t> bytes(DTypeBytes(dt, n));
  EXPECT_TRUE(ConvertElements(host.data(), DType::kF32, bytes.data(), dt, n).ok());
  EXPECT_TRUE(b.CopyToDevice(mem->get(), bytes.data(), bytes.size()).ok());
  Buf out{std::move(*mem), {}};
  out.t = MakeTensor(out.mem.get(), dt, shape);
  return out;
}

Buf UploadI32(Backend& b, const std::vector<int64_t>& shape, const std::vector<int32_t>& host) {
  auto mem = AllocBuffer(b, std::max<size_t>(host.size() * 4, 16));
  EXPECT_TRUE(mem.ok());
  EXPECT_TRUE(b.CopyToDevice(mem->get(), host.data(), host.size() * 4).ok());
  Buf out{std::move(*mem), {}};
  out.t = MakeTensor(out.mem.get(), DType::kI32, shape);
  return out;
}

std::vector<float> RoundTo(DType dt, std::vector<float> v) {
  if (dt == DType::kF32) return v;
  std::vector<uint16_t> tmp(v.size());
  EXPECT_TRUE(ConvertElements(v.data(), DType::kF32, tmp.data(), dt, v.size()).ok());
  EXPECT_TRUE(ConvertElements(tmp.data(), dt, v.data(), DType::kF32, v.size()).ok());
  return v;
}

std::vector<float> Read(Backend& b, const Tensor& t) {
  std::vector<float> v(t.numel());
  Status st = b.CopyToHostF32(v.data(), t);
  EXPECT_TRUE(st.ok()) << st.message();
  return v;
}

std::vector<float> Random(std::mt19937& g, int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

void ExpectClose(const std::vector<float>& ref, const std::vector<float>& got, double tol, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ++bad;
      continue;
    }
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  EXPECT_EQ(bad, 0u) << what << ": non-finite (unwritten?) elements";
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  EXPECT_LE(rel, tol) << what << ": relative L2 error " << rel;
}

struct Case {
  int hd, group, hkv, block_size;
  std::vector<int> ctx, q_len;  // cached tokens before the step, and query tokens, per sequence
  int window = 0;
  float softcap = 0.0f;
  bool alibi = false;
};

// The batch tensors on one backend; max_seq_len is the caller's.
struct DevBatch {
  Buf pos, slots, qs, lens, tables;
  AttentionBatch b;
};

void RunCase(DType dt, const Case& c, std::mt19937& g) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  auto gpu_or = MakeCudaBackend(0, dt);
  ASSERT_TRUE(gpu_or.ok()) << gpu_or.status().message();
  std::unique_ptr<Backend> gpu = std::move(*gpu_or);

  const int n_seqs = static_cast<int>(c.ctx.size()), bs = c.block_size;
  int max_len = 0, max_q = 0, max_blocks = 0, n_blocks = 3;
  for (int i = 0; i < n_seqs; ++i) {
    const int len = c.ctx[i] + c.q_len[i];
    max_len = std::max(max_len, len);
    max_q = std::max(max_q, c.q_len[i]);
    max_blocks = std::max(max_blocks, (len + bs - 1) / bs);
    n_blocks += (len + bs - 1) / bs;
  }
  std::vector<int32_t> perm(n_blocks), positions, slots, q_start{0}, seq_lens;
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  std::vector<int32_t> tables(size_t(n_seqs) * max_blocks, 0);
  int next = 0;
  for (int i = 0; i < n_seqs; ++i) {
    const int len = c.ctx[i] + c.q_len[i];
    for (int b = 0; b < (len + bs - 1) / bs; ++b) tables[size_t(i) * max_blocks + b] = perm[next++];
    for (int j = c.ctx[i]; j < len; ++j) {
      positions.push_back(j);
      slots.push_back(tables[size_t(i) * max_blocks + j / bs] * bs + j % bs);
    }
    seq_lens.push_back(len);
    q_start.push_back(static_cast<int32_t>(positions.size()));
  }
  const int n_tokens = static_cast<int>(positions.size());
  auto upload_batch = [&](Backend& be, int max_seq_len) {
    DevBatch d;
    d.pos = UploadI32(be, {n_tokens}, positions);
    d.slots = UploadI32(be, {n_tokens}, slots);
    d.qs = UploadI32(be, {n_seqs + 1}, q_start);
    d.lens = UploadI32(be, {n_seqs}, seq_lens);
    d.tables = UploadI32(be, {n_seqs, max_blocks}, tables);
    d.b.n_seqs = n_seqs;
    d.b.n_tokens = n_tokens;
    d.b.max_q_len = max_q;
    d.b.max_seq_len = max_seq_len;
    d.b.max_blocks_per_seq = max_blocks;
    d.b.block_size = bs;
    d.b.positions = d.pos.t;
    d.b.slot_mapping = d.slots.t;
    d.b.q_start = d.qs.t;
    d.b.seq_lens = d.lens.t;
    d.b.block_tables = d.tables.t;
    return d;
  };

  const int hq = c.hkv * c.group, hd = c.hd, row = (hq + 2 * c.hkv) * hd;
  const std::vector<int64_t> cshape = {n_blocks, bs, c.hkv, hd};
  const std::vector<float> qkv = RoundTo(dt, Random(g, int64_t(n_tokens) * row, -2.0f, 2.0f));
  const std::vector<float> kc = RoundTo(dt, Random(g, Numel(cshape), -2.0f, 2.0f));
  const std::vector<float> vc = RoundTo(dt, Random(g, Numel(cshape), -1.0f, 1.0f));
  const std::vector<float> slopes = Random(g, hq, 0.01f, 0.5f);
  AttentionParams ap;
  ap.scale = 1.0f / std::sqrt(float(hd));
  ap.sliding_window = c.window;
  ap.softcap = c.softcap;
  const AttentionShape shape{hq, c.hkv, hd};

  // CPU oracle with the true maximum.
  DevBatch bc = upload_batch(*cpu, max_len);
  Buf qc = Upload(*cpu, DType::kF32, {n_tokens, row}, qkv), kcc = Upload(*cpu, DType::kF32, cshape, kc),
      vcc = Upload(*cpu, DType::kF32, cshape, vc), sc = Upload(*cpu, DType::kF32, {hq}, slopes);
  Buf oc = Upload(*cpu, DType::kF32, {n_tokens, hq * hd}, std::vector<float>(size_t(n_tokens) * hq * hd, 0.0f));
  AttentionParams apc = ap;
  if (c.alibi) apc.alibi_slopes = sc.t;
  cpu->Attention(oc.t, qc.t, bc.b, shape, apc, KvCacheLayer{kcc.t, vcc.t});
  const std::vector<float> ref = Read(*cpu, oc.t);

  Buf qg = Upload(*gpu, dt, {n_tokens, row}, qkv), kcg = Upload(*gpu, dt, cshape, kc),
      vcg = Upload(*gpu, dt, cshape, vc), sg = Upload(*gpu, DType::kF32, {hq}, slopes);
  AttentionParams apg = ap;
  if (c.alibi) apg.alibi_slopes = sg.t;
  {
    DevBatch bg = upload_batch(*gpu, max_len);
    Buf og = Upload(*gpu, dt, {n_tokens, hq * hd}, std::vector<float>(size_t(n_tokens) * hq * hd, std::nanf("")));
    gpu->Attention(og.t, qg.t, bg.b, shape, apg, KvCacheLayer{kcg.t, vcg.t});
    Status st = gpu->Synchronize();
    ASSERT_TRUE(st.ok()) << st.message();
    ExpectClose(ref, Read(*gpu, og.t), dt == DType::kF32 ? 1e-5 : 1e-2,
                std::string(DTypeName(dt)) + " hd=" + std::to_string(hd) + " group=" + std::to_string(c.group) +
                    " hkv=" + std::to_string(c.hkv) + " tokens=" + std::to_string(n_tokens) +
                    " max_len=" + std::to_string(max_len) + " block_size=" + std::to_string(bs) +
                    (c.window ? " window=" + std::to_string(c.window) : "") + (c.softcap > 0 ? " softcap" : "") +
                    (c.alibi ? " alibi" : ""));
  }
}

TEST(CudaPrefillAttention, LongRaggedAndChunkedPrefill) {
  KILN_REQUIRE_CUDA();
  std::mt19937 g(31);
  for (DType dt : {DType::kBF16, DType::kF16}) {
    // One long sequence (GQA 4), several sequences (GQA 8), chunked prefill behind cached prefixes.
    RunCase(dt, {128, 4, 2, 16, {0}, {4096}}, g);
    RunCase(dt, {128, 8, 1, 16, {0, 0, 0}, {1000, 517, 2048}}, g);
    RunCase(dt, {128, 4, 2, 32, {2048, 700, 0, 5}, {512, 300, 129, 1}}, g);
    // Block sizes that are multiples of 16 but not powers of two; other head dims.
    RunCase(dt, {128, 4, 2, 48, {77}, {600}}, g);
    RunCase(dt, {64, 8, 1, 64, {100}, {2000}}, g);
    RunCase(dt, {96, 4, 1, 16, {0, 31}, {333, 64}}, g);
    // Sliding window across many tiles, softcap, ALiBi.
    Case w{128, 4, 2, 16, {1000}, {1500}};
    w.window = 700;
    RunCase(dt, w, g);
    Case s{256, 2, 2, 16, {0}, {1024}};
    s.softcap = 30.0f;
    RunCase(dt, s, g);
    Case a{128, 4, 2, 16, {0, 33}, {700, 190}};
    a.alibi = true;
    RunCase(dt, a, g);
  }
}

}  // namespace
}  // namespace kiln
