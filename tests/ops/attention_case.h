// The paged-attention test harness shared by the decode and prefill attention tests: a batch of
// sequences with cached prefixes and query chunks, scattered KV blocks, against the CPU oracle.
#pragma once
#include <algorithm>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "ops/cuda_test_util.h"

namespace kiln::test_ops {

struct Case {
  int hd, group, hkv, block_size;
  std::vector<int> ctx, q_len;  // cached tokens before the step, and query tokens, per sequence
  int window = 0;
  float softcap = 0.0f;
  bool alibi = false;

  // The same case with a sliding window, a logit softcap or ALiBi.
  Case Windowed(int w) const {
    Case c = *this;
    c.window = w;
    return c;
  }
  Case Softcapped(float cap) const {
    Case c = *this;
    c.softcap = cap;
    return c;
  }
  Case WithAlibi() const {
    Case c = *this;
    c.alibi = true;
    return c;
  }
};

// A packed batch over a paged cache whose physical blocks are handed out in shuffled order (plus
// a few spare blocks nobody owns): sequence i has ctx[i] cached tokens and q_len[i] query tokens.
struct HostBatch {
  int n_seqs = 0, n_tokens = 0, max_q = 0, max_len = 0, max_blocks = 0, n_blocks = 0, bs = 0;
  std::vector<int32_t> positions, slots, q_start, seq_lens, tables;
};

inline HostBatch MakePagedBatch(std::mt19937& g, const std::vector<int>& ctx, const std::vector<int>& q_len,
                                int block_size) {
  HostBatch h;
  h.bs = block_size;
  h.n_seqs = static_cast<int>(ctx.size());
  h.n_blocks = 3;  // spare
  for (int i = 0; i < h.n_seqs; ++i) {
    const int len = ctx[i] + q_len[i];
    h.max_len = std::max(h.max_len, len);
    h.max_q = std::max(h.max_q, q_len[i]);
    h.max_blocks = std::max(h.max_blocks, (len + h.bs - 1) / h.bs);
    h.n_blocks += (len + h.bs - 1) / h.bs;
  }
  std::vector<int32_t> perm(h.n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  h.tables.assign(size_t(h.n_seqs) * h.max_blocks, 0);
  int next = 0;
  h.q_start.push_back(0);
  for (int i = 0; i < h.n_seqs; ++i) {
    const int len = ctx[i] + q_len[i], nb = (len + h.bs - 1) / h.bs;
    for (int b = 0; b < nb; ++b) h.tables[size_t(i) * h.max_blocks + b] = perm[next++];
    for (int j = ctx[i]; j < len; ++j) {
      h.positions.push_back(j);
      h.slots.push_back(h.tables[size_t(i) * h.max_blocks + j / h.bs] * h.bs + j % h.bs);
    }
    h.seq_lens.push_back(len);
    h.q_start.push_back(static_cast<int32_t>(h.positions.size()));
  }
  h.n_tokens = static_cast<int>(h.positions.size());
  return h;
}

// The batch tensors on one backend; max_seq_len is the caller's (the true maximum, or an upper
// bound as a CUDA graph bucket would give).
struct DevBatch {
  Buf pos, slots, qs, lens, tables;
  AttentionBatch b;
};

inline DevBatch UploadBatch(Backend& be, const HostBatch& h, int max_seq_len) {
  DevBatch d;
  d.pos = UploadI32(be, {h.n_tokens}, h.positions);
  d.slots = UploadI32(be, {h.n_tokens}, h.slots);
  d.qs = UploadI32(be, {h.n_seqs + 1}, h.q_start);
  d.lens = UploadI32(be, {h.n_seqs}, h.seq_lens);
  d.tables = UploadI32(be, {h.n_seqs, h.max_blocks}, h.tables);
  d.b.n_seqs = h.n_seqs;
  d.b.n_tokens = h.n_tokens;
  d.b.max_q_len = h.max_q;
  d.b.max_seq_len = max_seq_len;
  d.b.max_blocks_per_seq = h.max_blocks;
  d.b.block_size = h.bs;
  d.b.positions = d.pos.t;
  d.b.slot_mapping = d.slots.t;
  d.b.q_start = d.qs.t;
  d.b.seq_lens = d.lens.t;
  d.b.block_tables = d.tables.t;
  return d;
}

// Runs case c on the CPU oracle (with the true maximum length) and on the CUDA backend once per
// max_seq_len in `bounds(true maximum)`; outputs are poisoned with NaN first and must agree within
// 1e-5 (f32) / 1e-2 (bf16, f16) relative L2.
inline void RunAttentionCase(DType dt, const Case& c, std::mt19937& g,
                             const std::function<std::vector<int>(int)>& bounds) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend();
  auto gpu_or = MakeCudaBackend(0, dt);
  ASSERT_TRUE(gpu_or.ok()) << gpu_or.status().message();
  std::unique_ptr<Backend> gpu = std::move(*gpu_or);

  const HostBatch h = MakePagedBatch(g, c.ctx, c.q_len, c.block_size);
  const int n_blocks = h.n_blocks, bs = h.bs, n_tokens = h.n_tokens, max_len = h.max_len;
  auto upload_batch = [&](Backend& be, int max_seq_len) { return UploadBatch(be, h, max_seq_len); };

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
  for (int bound : bounds(max_len)) {
    DevBatch bg = upload_batch(*gpu, bound);
    Buf og = Upload(*gpu, dt, {n_tokens, hq * hd}, std::vector<float>(size_t(n_tokens) * hq * hd, std::nanf("")));
    gpu->Attention(og.t, qg.t, bg.b, shape, apg, KvCacheLayer{kcg.t, vcg.t});
    Status st = gpu->Synchronize();
    ASSERT_TRUE(st.ok()) << st.message();
    ExpectClose(ref, Read(*gpu, og.t), dt == DType::kF32 ? 1e-5 : 1e-2,
                std::string(DTypeName(dt)) + " hd=" + std::to_string(hd) + " group=" + std::to_string(c.group) +
                    " hkv=" + std::to_string(c.hkv) + " tokens=" + std::to_string(n_tokens) +
                    " max_len=" + std::to_string(max_len) + " bound=" + std::to_string(bound) +
                    " block_size=" + std::to_string(bs) + (c.window ? " window=" + std::to_string(c.window) : "") +
                    (c.softcap > 0 ? " softcap" : "") + (c.alibi ? " alibi" : ""));
  }
}

}  // namespace kiln::test_ops
