// Standalone check + timing of the tensor-core prefill attention kernel over the paged KV cache.
//
//   nvcc -std=c++20 -O3 -gencode arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Isrc -Iinclude \
//        bench/kernels/prefill_attention_bench.cu -o prefill_attention_bench
//   (sm_90a: the Hopper wgmma path; with -arch=sm_90 only the mma.sync kernel is built)
//   ./prefill_attention_bench            # correctness cases vs an fp32 reference, then timings
//   PA_MODE=check|time|small ./prefill_attention_bench   (small: a few short cases, for compute-sanitizer)
//
// Built with -DKILN_BENCH_OLD_PREFILL=<header> it also times an older kernel copy, placed in
// namespace kiln::cuda::old_prefill, in the same process (A/B on the same card).
// Timings: CUDA events around each launch after warm-up, median of PA_ITERS (default 30).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#define KILN_PA_BENCH_KNOBS 1
#include "bench_util.h"
#include "../../src/backend/cuda/kernels/prefill_attention.cu"
#ifdef KILN_BENCH_OLD_PREFILL
#include KILN_BENCH_OLD_PREFILL
#endif


namespace pa_bench {
using namespace kiln::cuda;

// fp32 reference: one block per (token, head); scores in shared memory.
template <typename T>
__global__ void RefKernel(AttnArgs a, const int* tok_seq, float* out) {
  extern __shared__ float sc[];
  const int tok = blockIdx.x, h = blockIdx.y, seq = tok_seq[tok];
  const int hq = a.n_heads, hkv = a.n_kv_heads, hd = a.head_dim, kvh = h / (hq / hkv);
  const int pos = a.positions[tok];
  const int lo = a.sliding_window > 0 ? max(0, pos - a.sliding_window + 1) : 0;
  const int n = pos + 1 - lo;
  const T* q =
      static_cast<const T*>(a.qkv) + static_cast<int64_t>(tok) * (hq + 2 * hkv) * hd + static_cast<int64_t>(h) * hd;
  const int* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  const float slope = a.alibi ? a.alibi[h] : 0.0f;
  __shared__ float red[32];
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int j = lo + i;
    const int64_t off =
        ((static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size) * hkv + kvh) * hd;
    float acc = 0.0f;
    for (int d = 0; d < hd; ++d) acc += ToF32(q[d]) * ToF32(kc[off + d]);
    float v = acc * a.scale;
    if (a.softcap > 0.0f) v = a.softcap * tanhf(v / a.softcap);
    v += slope * static_cast<float>(j - pos);
    sc[i] = v;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, sc[i]);
  m = WarpMax(m);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  m = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) m = fmaxf(m, red[w]);
  __syncthreads();
  float l = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float p = expf(sc[i] - m);
    sc[i] = p;
    l += p;
  }
  l = BlockSum(l, red);
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int j = lo + i;
      const int64_t off =
          ((static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size) * hkv + kvh) * hd;
      acc += sc[i] * ToF32(vc[off + d]);
    }
    out[(static_cast<int64_t>(tok) * hq + h) * hd + d] = acc / l;
  }
}

struct Case {
  std::string name;
  std::vector<int> ctx, qlen;
  int hq = 32, hkv = 8, hd = 128, bs = 16;
  bool f16 = false;
  int window = 0;
  float softcap = 0.0f;
  bool alibi = false;
  bool check = true, time = false;
};

uint16_t F32ToBits(float f, bool f16) {
  if (f16) {
    __half h = __float2half_rn(f);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  __nv_bfloat16 h = __float2bfloat16_rn(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float BitsToF32(uint16_t b, bool f16) {
  if (f16) {
    __half h;
    std::memcpy(&h, &b, 2);
    return __half2float(h);
  }
  __nv_bfloat16 h;
  std::memcpy(&h, &b, 2);
  return __bfloat162float(h);
}

struct Setup {
  AttnArgs a;
  ElemType et;
  std::vector<void*> bufs;
  int* tok_seq = nullptr;
  double flops = 0;
  int64_t out_elems = 0;
  ~Setup() {
    for (void* p : bufs) cudaFree(p);
  }
  template <typename X>
  X* Up(const std::vector<X>& v) {
    void* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(1, v.size() * sizeof(X))));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(X), cudaMemcpyHostToDevice));
    bufs.push_back(p);
    return static_cast<X*>(p);
  }
};

void Build(const Case& c, std::mt19937& g, Setup& s) {
  const int n = static_cast<int>(c.ctx.size());
  std::vector<int> pos, qs{0}, lens, tok_seq;
  int max_q = 0, max_len = 0, max_blocks = 0;
  for (int i = 0; i < n; ++i) {
    const int len = c.ctx[i] + c.qlen[i];
    for (int j = c.ctx[i]; j < len; ++j) {
      pos.push_back(j);
      tok_seq.push_back(i);
      const int lo = c.window > 0 ? std::max(0, j - c.window + 1) : 0;
      s.flops += 4.0 * c.hd * c.hq * (j + 1 - lo);
    }
    qs.push_back(static_cast<int>(pos.size()));
    lens.push_back(len);
    max_q = std::max(max_q, c.qlen[i]);
    max_len = std::max(max_len, len);
    max_blocks = std::max(max_blocks, (len + c.bs - 1) / c.bs);
  }
  const int n_blocks = n * max_blocks + 3;
  std::vector<int> perm(n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  std::vector<int> tables(static_cast<size_t>(n) * max_blocks);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = perm[i];
  const int tokens = static_cast<int>(pos.size());
  const int64_t row = static_cast<int64_t>(c.hq + 2 * c.hkv) * c.hd;
  const int64_t cache = static_cast<int64_t>(n_blocks) * c.bs * c.hkv * c.hd;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> qkv(tokens * row), kc(cache), vc(cache);
  for (auto& x : qkv) x = F32ToBits(2.0f * u(g), c.f16);
  for (auto& x : kc) x = F32ToBits(2.0f * u(g), c.f16);
  for (auto& x : vc) x = F32ToBits(u(g), c.f16);
  AttnArgs& a = s.a;
  a.qkv = s.Up(qkv);
  a.k_cache = s.Up(kc);
  a.v_cache = s.Up(vc);
  a.positions = s.Up(pos);
  a.q_start = s.Up(qs);
  a.seq_lens = s.Up(lens);
  a.block_tables = s.Up(tables);
  s.tok_seq = s.Up(tok_seq);
  if (c.alibi) {
    std::vector<float> sl(c.hq);
    for (int h = 0; h < c.hq; ++h) sl[h] = std::pow(2.0f, -8.0f * (h + 1) / c.hq);
    a.alibi = s.Up(sl);
  }
  s.out_elems = static_cast<int64_t>(tokens) * c.hq * c.hd;
  std::vector<uint16_t> poison(s.out_elems, 0xFFFF);  // NaN in both formats
  a.out = s.Up(poison);
  a.n_seqs = n;
  a.n_tokens = tokens;
  a.max_q_len = max_q;
  a.max_seq_len = max_len;
  a.max_blocks_per_seq = max_blocks;
  a.block_size = c.bs;
  a.n_heads = c.hq;
  a.n_kv_heads = c.hkv;
  a.head_dim = c.hd;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  a.sliding_window = c.window;
  a.softcap = c.softcap;
  s.et = c.f16 ? ElemType::kF16 : ElemType::kBF16;
}

using LaunchFn = std::function<cudaError_t(const AttnArgs&, ElemType, cudaStream_t)>;
struct Variant {
  std::string name;
  LaunchFn fn;
  bool hd128_bf16_only;
};

std::vector<Variant> Variants() {
  std::vector<Variant> v;
#ifdef KILN_BENCH_OLD_PREFILL
  v.push_back(
      {"old",
       [](const AttnArgs& a, ElemType t, cudaStream_t s) { return old_prefill::LaunchPrefillAttention(a, t, s); },
       false});
#endif
  v.push_back(
      {"new", [](const AttnArgs& a, ElemType t, cudaStream_t s) { return LaunchPrefillAttention(a, t, s); }, false});
  v.push_back({"mma",
               [](const AttnArgs& a, ElemType t, cudaStream_t s) {
                 return t == ElemType::kBF16 ? LaunchMmaT<__nv_bfloat16>(a, s) : LaunchMmaT<__half>(a, s);
               },
               false});
#ifndef PA_NO_VARIANTS
  // Hopper wgmma configurations (hd 128, bf16): WgCfg<HD, keys/tile, blocks/SM, stages>.
#define PA_WG(name, ...)                                                                                            \
  v.push_back(                                                                                                      \
      {name,                                                                                                        \
       [](const AttnArgs& a, ElemType, cudaStream_t s) { return LaunchWg<__nv_bfloat16, WgCfg<__VA_ARGS__>>(a, s); }, \
       true})
  PA_WG("w1:128k1b2s", 128, 128, 1, 2);
  PA_WG("w2:64k1b2s", 128, 64, 1, 2);
  PA_WG("w3:64k1b3s", 128, 64, 1, 3);
  PA_WG("w4:64k2b2s", 128, 64, 2, 2);
  PA_WG("w5:128k1b3s", 128, 128, 1, 3);
#undef PA_WG
#endif
#ifdef PA_OLD_VARIANTS
  // Alternative configurations (hd 128, bf16): Cfg<HD, warps, m-tiles/warp, blocks/SM, keys/tile, stages, Q in regs>.
#define PA_VARIANT(name, ...)                                                                                     \
  v.push_back(                                                                                                    \
      {name,                                                                                                      \
       [](const AttnArgs& a, ElemType, cudaStream_t s) { return Launch<__nv_bfloat16, Cfg<__VA_ARGS__>>(a, s); }, \
       true})
  PA_VARIANT("c1:8w1m1b64k2sQr", 128, 8, 1, 1, 64, 2, true);
  PA_VARIANT("c2:8w1m2b64k2s", 128, 8, 1, 2, 64, 2, false);
  PA_VARIANT("c3:8w1m1b64k3sQr", 128, 8, 1, 1, 64, 3, true);
  PA_VARIANT("c4:4w2m2b64k2s", 128, 4, 2, 2, 64, 2, false);
  PA_VARIANT("c5:4w1m3b32k2sQr", 128, 4, 1, 3, 32, 2, true);
  PA_VARIANT("c6:4w1m4b32k2s", 128, 4, 1, 4, 32, 2, false);
  PA_VARIANT("c7:8w1m2b32k2sQr", 128, 8, 1, 2, 32, 2, true);
  PA_VARIANT("c8:8w1m2b32k2s", 128, 8, 1, 2, 32, 2, false);
#undef PA_VARIANT
#endif
  return v;
}

// Returns false on a failed check.
bool Check(const Case& c, Setup& s, const std::vector<Variant>& vars) {
  float* ref = nullptr;
  CK(cudaMalloc(&ref, s.out_elems * sizeof(float)));
  const size_t rsmem = static_cast<size_t>(s.a.max_seq_len + 64) * sizeof(float);
  CK(cudaFuncSetAttribute(RefKernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  CK(cudaFuncSetAttribute(RefKernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  const dim3 grid(s.a.n_tokens, s.a.n_heads);
  if (c.f16) {
    RefKernel<__half><<<grid, 128, rsmem>>>(s.a, s.tok_seq, ref);
  } else {
    RefKernel<__nv_bfloat16><<<grid, 128, rsmem>>>(s.a, s.tok_seq, ref);
  }
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  std::vector<float> r(s.out_elems);
  CK(cudaMemcpy(r.data(), ref, s.out_elems * sizeof(float), cudaMemcpyDeviceToHost));
  CK(cudaFree(ref));
  bool ok = true;
  for (const Variant& v : vars) {
    if (v.hd128_bf16_only && (c.hd != 128 || c.f16)) continue;
    CK(cudaMemset(s.a.out, 0xFF, s.out_elems * 2));
    CK(v.fn(s.a, s.et, nullptr));
    CK(cudaDeviceSynchronize());
    std::vector<uint16_t> o(s.out_elems);
    CK(cudaMemcpy(o.data(), s.a.out, s.out_elems * 2, cudaMemcpyDeviceToHost));
    double num = 0, den = 0, maxerr = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < s.out_elems; ++i) {
      const float x = BitsToF32(o[i], c.f16);
      if (!std::isfinite(x)) {
        ++bad;
        continue;
      }
      const double d = x - r[i];
      num += d * d;
      den += static_cast<double>(r[i]) * r[i];
      maxerr = std::max(maxerr, std::fabs(d));
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    const bool pass = bad == 0 && rel < 1e-2 && maxerr < 0.05;
    ok = ok && pass;
    std::printf("CHECK %-34s %-7s rel_l2 %.2e max_abs %.2e nonfinite %lld %s\n", c.name.c_str(), v.name.c_str(), rel,
                maxerr, static_cast<long long>(bad), pass ? "ok" : "FAIL");
  }
  return ok;
}

void Time(const Case& c, Setup& s, const std::vector<Variant>& vars, int iters, std::vector<std::string>& table) {
  std::string line = c.name;
  char buf[128];
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (const Variant& v : vars) {
    if (v.hd128_bf16_only && (c.hd != 128 || c.f16)) continue;
    for (int i = 0; i < 3; ++i) CK(v.fn(s.a, s.et, nullptr));
    CK(cudaDeviceSynchronize());
    std::vector<float> ms;
    for (int i = 0; i < iters; ++i) {
      CK(cudaEventRecord(e0));
      CK(v.fn(s.a, s.et, nullptr));
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float t = 0;
      CK(cudaEventElapsedTime(&t, e0, e1));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const float med = ms[ms.size() / 2];
    std::snprintf(buf, sizeof(buf), " | %s %.4f ms %.0f TF/s", v.name.c_str(), med, s.flops / (med * 1e-3) / 1e12);
    line += buf;
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::printf("TIME %s\n", line.c_str());
  table.push_back(line);
}

}  // namespace pa_bench

int main() {
  using namespace pa_bench;
  const char* m = std::getenv("PA_MODE");
  const std::string mode = m ? m : "all";
  const int iters = std::getenv("PA_ITERS") ? std::atoi(std::getenv("PA_ITERS")) : 30;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::printf("wgmma path available: bf16 hd128 %d, f16 hd64 %d\n", WgAvailable<__nv_bfloat16, WgCfg128>() ? 1 : 0,
              WgAvailable<__half, WgCfg64>() ? 1 : 0);
  if (const char* vs = std::getenv("PA_VSWAP")) {
    const int x = std::atoi(vs);
    CK(cudaMemcpyToSymbol(g_pa_vswap, &x, sizeof(x)));
  }
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(std::move(c)); };
  if (mode == "small") {
    add({"small ragged hd128 g4", {0, 17, 40}, {100, 33, 1}, 8, 2, 128, 16});
    add({"small hd64 f16 win", {5, 0}, {70, 130}, 4, 4, 64, 32, true, 20});
    add({"small hd256 softcap", {0, 30}, {150, 20}, 4, 1, 256, 16, false, 0, 5.0f});
    add({"small hd80 alibi bs48", {3, 0}, {90, 64}, 8, 1, 80, 48, true, 0, 0.0f, true});
  } else {
    // Correctness (ragged, GQA 1/4/8, chunked, every head dim, mask kinds, block sizes).
    add({"ragged hd128 g8 bs32", {0, 17, 50, 0, 300}, {300, 211, 1, 77, 1000}, 32, 4, 128, 32});
    add({"chunked 2048+512 g4", {2048}, {512}, 32, 8, 128, 16});
    add({"3 seqs chunked g4 bs64", {1000, 0, 129}, {700, 1500, 64}, 16, 4, 128, 64});
    add({"hd64 g1 f16", {0, 40}, {333, 129}, 8, 8, 64, 16, true});
    add({"hd256 g4 win100", {0, 20}, {400, 150}, 8, 2, 256, 16, false, 100});
    add({"hd80 g8 f16 softcap bs48", {0, 7}, {250, 100}, 8, 1, 80, 48, true, 0, 5.0f});
    add({"hd96 alibi bs16", {10, 0}, {260, 31}, 8, 2, 96, 16, false, 0, 0.0f, true});
    add({"hd128 win257 S1500 g4", {0}, {1500}, 32, 8, 128, 16, false, 257});
    add({"hd128 f16 S1024 g4", {0}, {1024}, 32, 8, 128, 16, true});
    Case c;
    c.name = "S=512";
    c.ctx = {0};
    c.qlen = {512};
    c.time = true;
    add(c);
    c.name = "S=2048";
    c.qlen = {2048};
    add(c);
    c.name = "S=4096";
    c.qlen = {4096};
    add(c);
    c.name = "4x512 packed";
    c.ctx = {0, 0, 0, 0};
    c.qlen = {512, 512, 512, 512};
    add(c);
    c.name = "S=8192";
    c.ctx = {0};
    c.qlen = {8192};
    c.check = false;
    add(c);
    c.name = "chunk 512 after 2048";
    c.check = true;
    c.ctx = {2048};
    c.qlen = {512};
    add(c);
  }
  std::vector<Variant> vars = Variants();
  if (const char* only_v = std::getenv("PA_VARIANT")) {
    std::vector<Variant> keep;
    for (auto& v : vars)
      if (v.name == only_v) keep.push_back(v);
    vars = keep;
  }
  if (const char* only = std::getenv("PA_ONLY")) {
    std::vector<Case> keep;
    for (auto& c : cases)
      if (c.name == only) keep.push_back(c);
    cases = keep;
  }
  std::mt19937 g(1234);
  bool ok = true;
  std::vector<std::string> table;
  for (const Case& c : cases) {
    Setup s;
    Build(c, g, s);
    if (c.check && mode != "time") ok = Check(c, s, vars) && ok;
    if (c.time && mode != "check" && mode != "small") Time(c, s, vars, iters, table);
  }
  std::printf(
      "\nLlama-3-8B layer shape (hq 32, hkv 8, hd 128, bf16, block 16), median of %d, causal-counted TFLOP/s:\n",
      iters);
  for (const auto& l : table) std::printf("  %s\n", l.c_str());
  std::printf("%s\n", ok ? "ALL CHECKS PASSED" : "SOME CHECKS FAILED");
  return ok ? 0 : 1;
}
