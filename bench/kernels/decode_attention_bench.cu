// Split-K paged decode attention: correctness against a float64 CPU reference, then timings.
//
//   decode_attention_bench [--check N] [--time [--quick]]
//
// --check N: N random cases (f32/f16/bf16, head_dim 8..256, GQA 1/4/8, ragged decode and prefill
//   batches, block size 16/32, sliding window, softcap, ALiBi) with max_seq_len set to the true
//   maximum or to an upper bound (up to the next power of two, at least 2x) as a CUDA graph bucket
//   would; outputs are poisoned with NaN first. Exits 1 on any failure.
// --time: Llama-3-8B layer (32 q / 8 kv heads, head_dim 128, bf16, block 16), uniform contexts.
//   Each shape is captured as a CUDA graph of L launches over L different caches (L x cache >=
//   512 MiB, so L2 never holds them, as in a real step); us per layer = replay time / L, median.
//   KV GB/s counts the K and V bytes read once. Copy bandwidth is measured in the same run.
//   --quick: batch 1 and four large-batch shapes only. --shape B:CTX (repeatable): just these.
//   --ragged: contexts spread evenly over [CTX/2, CTX] instead (as in a running batch).
// --split auto|clusters|streamk: which decode kernel (default auto, as the backend picks).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/kernels/kernels.h"
#include "bench_util.h"

using namespace kiln::cuda;


namespace {

int g_sms = 0;
DecodeSplit g_split = DecodeSplit::kAuto;
bool g_ragged = false;

// A zeroed workspace as the launcher asks for (the stream-K kernel's counters start at zero).
void* Workspace(const AttnArgs& a, ElemType et) {
  const size_t ws = DecodeAttentionWorkspaceBytes(a, et, g_sms, g_split);
  void* p = nullptr;
  if (ws) {
    CK(cudaMalloc(&p, ws));
    CK(cudaMemset(p, 0, ws));
  }
  return p;
}

size_t EB(ElemType t) { return ElemBytes(t); }

// Host rounding through t, and packing to t's bytes.
float RoundThrough(float x, ElemType t) {
  if (t == ElemType::kBF16) return __bfloat162float(__float2bfloat16(x));
  if (t == ElemType::kF16) return __half2float(__float2half(x));
  return x;
}
std::vector<uint8_t> Pack(const std::vector<float>& v, ElemType t) {
  std::vector<uint8_t> b(v.size() * EB(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == ElemType::kF32) {
      std::memcpy(&b[i * 4], &v[i], 4);
    } else if (t == ElemType::kBF16) {
      const __nv_bfloat16 h = __float2bfloat16(v[i]);
      std::memcpy(&b[i * 2], &h, 2);
    } else {
      const __half h = __float2half(v[i]);
      std::memcpy(&b[i * 2], &h, 2);
    }
  }
  return b;
}
float Unpack1(const uint8_t* p, ElemType t) {
  if (t == ElemType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  if (t == ElemType::kBF16) {
    __nv_bfloat16 h;
    std::memcpy(&h, p, 2);
    return __bfloat162float(h);
  }
  __half h;
  std::memcpy(&h, p, 2);
  return __half2float(h);
}

template <typename V>
V* Dev(const std::vector<V>& h) {
  V* p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(h.size() * sizeof(V), 16)));
  if (!h.empty()) CK(cudaMemcpy(p, h.data(), h.size() * sizeof(V), cudaMemcpyHostToDevice));
  return p;
}
void* DevBytes(const std::vector<uint8_t>& h) { return Dev(h); }

struct Batch {
  int n_seqs = 0, n_tokens = 0, max_q = 0, max_len = 0, max_blocks = 0, n_blocks = 0, bs = 16;
  std::vector<int32_t> positions, q_start, seq_lens, tables, seq_of;
};

// ctx[i] cached tokens + q_len[i] new ones per sequence; cache blocks scattered over n_blocks.
Batch MakeBatch(std::mt19937& g, const std::vector<int>& ctx, const std::vector<int>& q_len, int bs, int layers = 1,
                int layer = 0) {
  Batch b;
  b.bs = bs;
  b.n_seqs = static_cast<int>(ctx.size());
  for (int i = 0; i < b.n_seqs; ++i) {
    const int len = ctx[i] + q_len[i];
    b.max_len = std::max(b.max_len, len);
    b.max_q = std::max(b.max_q, q_len[i]);
    b.max_blocks = std::max(b.max_blocks, (len + bs - 1) / bs);
    b.n_blocks += (len + bs - 1) / bs;
  }
  b.n_blocks += 3;
  std::vector<int32_t> perm(b.n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  b.tables.assign(size_t(b.n_seqs) * b.max_blocks, 0);
  int next = 0;
  b.q_start.push_back(0);
  for (int i = 0; i < b.n_seqs; ++i) {
    const int len = ctx[i] + q_len[i], nb = (len + bs - 1) / bs;
    for (int k = 0; k < nb; ++k) b.tables[size_t(i) * b.max_blocks + k] = perm[next++] + layer * b.n_blocks;
    for (int j = ctx[i]; j < len; ++j) {
      b.positions.push_back(j);
      b.seq_of.push_back(i);
    }
    b.seq_lens.push_back(len);
    b.q_start.push_back(static_cast<int32_t>(b.positions.size()));
  }
  b.n_tokens = static_cast<int>(b.positions.size());
  (void)layers;
  return b;
}

int Rand(std::mt19937& g, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }

// ---- correctness ----
bool CheckCase(std::mt19937& g, ElemType et, int hd, int group, int hkv, const std::vector<int>& ctx,
               const std::vector<int>& q_len, int bs, int window, float softcap, bool alibi, int bound_mode,
               bool verbose) {
  const Batch b = MakeBatch(g, ctx, q_len, bs);
  const int hq = hkv * group, row = (hq + 2 * hkv) * hd;
  std::uniform_real_distribution<float> u(-2.0f, 2.0f), u1(-1.0f, 1.0f), us(0.01f, 0.5f);
  std::vector<float> qkv(size_t(b.n_tokens) * row), kc(size_t(b.n_blocks) * bs * hkv * hd), vc(kc.size()), slopes(hq);
  for (float& x : qkv) x = RoundThrough(u(g), et);
  for (float& x : kc) x = RoundThrough(u(g), et);
  for (float& x : vc) x = RoundThrough(u1(g), et);
  for (float& x : slopes) x = us(g);
  const float scale = 1.0f / std::sqrt(float(hd));

  // float64 reference
  std::vector<double> ref(size_t(b.n_tokens) * hq * hd);
  std::vector<double> sc;
  for (int t = 0; t < b.n_tokens; ++t) {
    const int s = b.seq_of[t], last = b.positions[t], first = window > 0 ? std::max(0, last - window + 1) : 0;
    for (int h = 0; h < hq; ++h) {
      const int kvh = h / group;
      const float* q = &qkv[size_t(t) * row + size_t(h) * hd];
      sc.assign(last - first + 1, 0.0);
      double mx = -1e300;
      for (int j = first; j <= last; ++j) {
        const int blk = b.tables[size_t(s) * b.max_blocks + j / bs];
        const float* k = &kc[((size_t(blk) * bs + j % bs) * hkv + kvh) * hd];
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(q[e]) * k[e];
        d *= scale;
        if (softcap > 0) d = softcap * std::tanh(d / softcap);
        if (alibi) d += double(slopes[h]) * (j - last);
        sc[j - first] = d;
        mx = std::max(mx, d);
      }
      double sum = 0;
      for (double& x : sc) sum += (x = std::exp(x - mx));
      double* o = &ref[(size_t(t) * hq + h) * hd];
      for (int j = first; j <= last; ++j) {
        const int blk = b.tables[size_t(s) * b.max_blocks + j / bs];
        const float* v = &vc[((size_t(blk) * bs + j % bs) * hkv + kvh) * hd];
        for (int e = 0; e < hd; ++e) o[e] += sc[j - first] / sum * v[e];
      }
    }
  }

  void* d_qkv = DevBytes(Pack(qkv, et));
  void* d_k = DevBytes(Pack(kc, et));
  void* d_v = DevBytes(Pack(vc, et));
  float* d_sl = Dev(slopes);
  int32_t *d_pos = Dev(b.positions), *d_qs = Dev(b.q_start), *d_len = Dev(b.seq_lens), *d_tab = Dev(b.tables);
  const size_t out_bytes = ref.size() * EB(et);
  void* d_out = nullptr;
  CK(cudaMalloc(&d_out, std::max<size_t>(out_bytes, 16)));
  CK(cudaMemset(d_out, 0xff, out_bytes));  // NaN in every float type
  AttnArgs a;
  a.out = d_out;
  a.qkv = d_qkv;
  a.k_cache = d_k;
  a.v_cache = d_v;
  a.positions = d_pos;
  a.q_start = d_qs;
  a.seq_lens = d_len;
  a.block_tables = d_tab;
  a.alibi = alibi ? d_sl : nullptr;
  a.n_seqs = b.n_seqs;
  a.n_tokens = b.n_tokens;
  a.max_q_len = b.max_q;
  int bound = b.max_len;
  if (bound_mode == 1) bound = std::max(2 * b.max_len, 1);
  if (bound_mode == 2) {
    bound = 1;
    while (bound < 2 * b.max_len) bound *= 2;
  }
  a.max_seq_len = bound;
  a.max_blocks_per_seq = b.max_blocks;
  a.block_size = bs;
  a.n_heads = hq;
  a.n_kv_heads = hkv;
  a.head_dim = hd;
  a.scale = scale;
  a.sliding_window = window;
  a.softcap = softcap;
  void* d_ws = Workspace(a, et);
  CK(LaunchDecodeAttention(a, et, d_ws, g_sms, 0, g_split));
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> got(out_bytes);
  CK(cudaMemcpy(got.data(), d_out, out_bytes, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const float x = Unpack1(&got[i * EB(et)], et);
    if (!std::isfinite(x)) {
      ++bad;
      continue;
    }
    num += (x - ref[i]) * (x - ref[i]);
    den += ref[i] * ref[i];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  const double tol = et == ElemType::kF32 ? 1e-5 : 1e-2;
  const bool ok = bad == 0 && rel <= tol;
  if (!ok || verbose)
    std::printf(
        "%s %s hd=%d G=%d hkv=%d seqs=%d tokens=%d max_len=%d bound=%d bs=%d win=%d cap=%g alibi=%d: rel %.2e, %zu "
        "non-finite\n",
        ok ? "ok  " : "FAIL",
        et == ElemType::kF32    ? "f32"
        : et == ElemType::kBF16 ? "bf16"
                                : "f16",
        hd, group, hkv, b.n_seqs, b.n_tokens, b.max_len, bound, bs, window, softcap, alibi ? 1 : 0, rel, bad);
  for (void* p : {d_qkv, d_k, d_v, static_cast<void*>(d_sl), d_out, d_ws}) cudaFree(p);
  for (int32_t* p : {d_pos, d_qs, d_len, d_tab}) cudaFree(p);
  return ok;
}

int RunChecks(int n) {
  std::mt19937 g(1234);
  const int hds[] = {8, 16, 64, 80, 96, 128, 256};
  const int groups[] = {1, 2, 4, 8, 6};
  const ElemType ets[] = {ElemType::kF32, ElemType::kBF16, ElemType::kF16};
  int fails = 0, runs = 0;
  // Fixed cases first: the Llama-3-8B decode shape at several lengths and bounds.
  for (int bound_mode = 0; bound_mode < 3; ++bound_mode)
    for (int len : {1, 17, 128, 511, 1024, 3000}) {
      std::vector<int> ctx = {len - 1, std::max(0, len / 3 - 1), 5}, q = {1, 1, 1};
      fails += !CheckCase(g, ElemType::kBF16, 128, 4, 8, ctx, q, 16, 0, 0.0f, false, bound_mode, true);
      fails += !CheckCase(g, ElemType::kF32, 128, 4, 8, {len - 1}, {1}, 16, 0, 0.0f, false, bound_mode, true);
      runs += 2;
    }
  // Large decode batches (the stream-K kernel under auto): ragged lengths, GQA 4 and 8.
  for (int ns : {40, 97, 300}) {
    std::vector<int> ctx, q(ns, 1);
    for (int s = 0; s < ns; ++s) ctx.push_back(Rand(g, 0, Rand(g, 0, 1) ? 64 : 3000));
    fails += !CheckCase(g, ElemType::kBF16, 128, 4, 8, ctx, q, 16, 0, 0.0f, false, Rand(g, 0, 2), true);
    fails += !CheckCase(g, ElemType::kF32, 64, 8, 4, ctx, q, 16, ns == 97 ? 200 : 0, 0.0f, false, 0, true);
    runs += 2;
  }
  for (int i = 0; i < n; ++i) {
    const ElemType et = ets[Rand(g, 0, 2)];
    const int hd = hds[Rand(g, 0, 6)], group = groups[Rand(g, 0, 4)], hkv = Rand(g, 1, 3);
    const bool prefill = Rand(g, 0, 3) == 0;
    const int ns = prefill ? Rand(g, 1, 4) : Rand(g, 1, 40);
    std::vector<int> ctx, q;
    for (int s = 0; s < ns; ++s) {
      ctx.push_back(Rand(g, 0, Rand(g, 0, 1) ? 300 : 2500));
      q.push_back(prefill ? Rand(g, 1, 70) : 1);
    }
    const int variant = Rand(g, 0, 3);
    fails += !CheckCase(g, et, hd, group, hkv, ctx, q, Rand(g, 0, 1) ? 16 : 32, variant == 1 ? Rand(g, 1, 300) : 0,
                        variant == 2 ? 5.0f : 0.0f, variant == 3, Rand(g, 0, 2), false);
    ++runs;
  }
  std::printf("check: %d of %d cases failed\n", fails, runs);
  return fails;
}

// ---- timing ----

__global__ void FillKernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    const float f = (x & 0xffff) / 32768.0f - 1.0f;
    p[i] = __bfloat16_as_ushort(__float2bfloat16(f));
  }
}

// us per layer for `batch` sequences of context `ctx` (bound: max_seq_len passed).
double TimeShape(int batch, int ctx, int bound, double* gbs) {
  const int hq = 32, hkv = 8, hd = 128, bs = 16;
  const int nb_seq = (ctx + bs - 1) / bs;
  const size_t layer_blocks = size_t(batch) * nb_seq;
  const size_t layer_bytes = layer_blocks * bs * hkv * hd * 2 * 2;
  const int L = static_cast<int>(std::clamp<size_t>((size_t(512) << 20) / layer_bytes + 1, 2, 256));
  const size_t elems = layer_blocks * L * bs * hkv * hd;
  uint16_t *kc, *vc, *qkv, *out;
  CK(cudaMalloc(&kc, elems * 2));
  CK(cudaMalloc(&vc, elems * 2));
  CK(cudaMalloc(&qkv, size_t(batch) * (hq + 2 * hkv) * hd * 2));
  CK(cudaMalloc(&out, size_t(batch) * hq * hd * 2));
  FillKernel<<<1024, 256>>>(kc, elems, 1);
  FillKernel<<<1024, 256>>>(vc, elems, 2);
  FillKernel<<<64, 256>>>(qkv, size_t(batch) * (hq + 2 * hkv) * hd, 3);
  CK(cudaGetLastError());
  std::vector<int32_t> pos(batch, ctx - 1), qs(batch + 1), lens(batch, ctx);
  std::iota(qs.begin(), qs.end(), 0);
  double keys = double(batch) * ctx;
  if (g_ragged) {  // evenly over [ctx / 2, ctx], shuffled
    keys = 0;
    for (int i = 0; i < batch; ++i) {
      lens[i] = ctx / 2 + (batch > 1 ? static_cast<int>(int64_t(ctx - ctx / 2) * i / (batch - 1)) : ctx - ctx / 2);
      pos[i] = lens[i] - 1;
      keys += lens[i];
    }
    std::mt19937 gr(7);
    std::vector<int> idx(batch);
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), gr);
    std::vector<int32_t> l2(batch), p2(batch);
    for (int i = 0; i < batch; ++i) l2[i] = lens[idx[i]], p2[i] = pos[idx[i]];
    lens = l2, pos = p2;
  }
  std::mt19937 g(5);
  std::vector<int32_t*> tabs;
  for (int l = 0; l < L; ++l) {
    std::vector<int32_t> perm(layer_blocks);
    std::iota(perm.begin(), perm.end(), static_cast<int32_t>(l * layer_blocks));
    std::shuffle(perm.begin(), perm.end(), g);
    tabs.push_back(Dev(perm));
  }
  int32_t *d_pos = Dev(pos), *d_qs = Dev(qs), *d_lens = Dev(lens);
  AttnArgs a;
  a.out = out;
  a.qkv = qkv;
  a.k_cache = kc;
  a.v_cache = vc;
  a.positions = d_pos;
  a.q_start = d_qs;
  a.seq_lens = d_lens;
  a.n_seqs = a.n_tokens = batch;
  a.max_q_len = 1;
  a.max_seq_len = bound;
  a.max_blocks_per_seq = nb_seq;
  a.block_size = bs;
  a.n_heads = hq;
  a.n_kv_heads = hkv;
  a.head_dim = hd;
  a.scale = 1.0f / std::sqrt(float(hd));
  void* d_ws = Workspace(a, ElemType::kBF16);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  a.block_tables = tabs[0];
  CK(LaunchDecodeAttention(a, ElemType::kBF16, d_ws, g_sms, s, g_split));  // warm-up outside the graph
  CK(cudaStreamSynchronize(s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int l = 0; l < L; ++l) {
    a.block_tables = tabs[l];
    CK(LaunchDecodeAttention(a, ElemType::kBF16, d_ws, g_sms, s, g_split));
  }
  CK(cudaStreamEndCapture(s, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) CK(cudaGraphLaunch(exec, s));
  CK(cudaStreamSynchronize(s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const int reps = std::max(3, static_cast<int>(std::min<size_t>(30, (size_t(4) << 30) / (layer_bytes * L) + 1)));
  std::vector<double> ts;
  for (int i = 0; i < 9; ++i) {
    CK(cudaEventRecord(e0, s));
    for (int r = 0; r < reps; ++r) CK(cudaGraphLaunch(exec, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    ts.push_back(ms * 1e3 / (reps * L));
  }
  CK(cudaGetLastError());
  std::sort(ts.begin(), ts.end());
  const double us = ts[ts.size() / 2];
  *gbs = keys * hkv * hd * 2 * 2 / (us * 1e-6) / 1e9;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(s);
  for (int32_t* p : tabs) cudaFree(p);
  for (void* p : {static_cast<void*>(kc), static_cast<void*>(vc), static_cast<void*>(qkv), static_cast<void*>(out),
                  d_ws, static_cast<void*>(d_pos), static_cast<void*>(d_qs), static_cast<void*>(d_lens)})
    cudaFree(p);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  int checks = -1;
  bool time = false, quick = false;
  std::vector<std::pair<int, int>> only;  // --shape B:CTX
  for (int i = 1; i < argc; ++i) {
    int b = 0, c = 0;
    if (!std::strcmp(argv[i], "--shape") && i + 1 < argc && std::sscanf(argv[++i], "%d:%d", &b, &c) == 2)
      only.push_back({b, c});
    if (!std::strcmp(argv[i], "--check") && i + 1 < argc) checks = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--time")) time = true;
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--ragged")) g_ragged = true;
    if (!std::strcmp(argv[i], "--split") && i + 1 < argc) {
      const std::string v = argv[++i];
      g_split = v == "clusters" ? DecodeSplit::kClusters : v == "streamk" ? DecodeSplit::kStreamK : DecodeSplit::kAuto;
    }
  }
  int dev = 0;
  cudaDeviceProp prop;
  CK(cudaGetDevice(&dev));
  CK(cudaGetDeviceProperties(&prop, dev));
  g_sms = prop.multiProcessorCount;
  int fails = 0;
  if (checks >= 0) fails = RunChecks(checks);
  if (time) {
    const double copy = CopyBandwidthGBs();
    std::printf("%s, %d SMs, copy %.0f GB/s (read + write), split %s%s\n", prop.name, g_sms, copy,
                g_split == DecodeSplit::kAuto       ? "auto"
                : g_split == DecodeSplit::kClusters ? "clusters"
                                                    : "streamk",
                g_ragged ? ", ragged contexts [ctx/2, ctx]" : "");
    std::printf("%5s %6s %6s %10s %9s %6s\n", "batch", "ctx", "bound", "us/layer", "KV GB/s", "%copy");
    struct S {
      int b, c, bound;
    };
    std::vector<S> shapes;
    for (auto [b, c] : only) shapes.push_back({b, c, c});
    if (only.empty()) {
      for (int c : {128, 512, 1024, 4096}) shapes.push_back({1, c, c});
      if (quick) {
        for (S x : {S{32, 1024, 1024}, S{32, 4096, 4096}, S{128, 2048, 2048}, S{256, 4096, 4096}}) shapes.push_back(x);
      } else {
        for (int b : {8, 32, 64, 128, 256})
          for (int c : {512, 1024, 2048, 4096}) shapes.push_back({b, c, c});
      }
      for (S x : {S{1, 512, 1024}, S{1, 1024, 2048}, S{64, 2048, 4096}}) shapes.push_back(x);
    }
    for (const S& x : shapes) {
      double gbs;
      const double us = TimeShape(x.b, x.c, x.bound, &gbs);
      std::printf("%5d %6d %6d %10.2f %9.0f %5.1f%%\n", x.b, x.c, x.bound, us, gbs, 100 * gbs / copy);
      std::fflush(stdout);
    }
  }
  return fails ? 1 : 0;
}
