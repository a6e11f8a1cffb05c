// kiln bench: latency mode (a batch of B fixed-length requests decoding in lockstep: TTFT,
// TPOT, tokens/s, weight-streaming GB/s and % of the copy bandwidth measured on the same GPU)
// and --mode throughput (many requests through the executor; tools/cmd_bench_throughput.cpp).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/backend.h"
#include "bench_requests.h"
#include "bench_throughput.h"
#include "command.h"
#include "format/engine_config.h"
#include "kiln/engine.h"
#include "kiln/executor.h"

namespace kiln::cli {
namespace {

using json = nlohmann::json;

struct BenchArgs {
  std::string mode = "latency";
  ThroughputArgs tp;  // --engine and the executor knobs are shared by both modes
  int batch = 1;
  int iterations = 3;
  bool single_path = true;  // batch 1: also time the single-request Engine path
};

// Bytes one decode step must stream: every weight but the embedding table (the LM head is
// read even when tied to it). Vectors (norms, biases) are f32.
double StreamedBytesPerStep(const EngineConfig& e) {
  const ModelConfig& c = e.model;
  const double w = static_cast<double>(DTypeSize(e.dtype));
  const double d = static_cast<double>(c.hidden_size), f = static_cast<double>(c.intermediate_size);
  const double mlp_rows = c.mlp == "gated" ? 3 * f : 2 * f;
  double per_layer = (static_cast<double>(c.qkv_dim()) * d + d * static_cast<double>(c.q_dim()) + mlp_rows * d) * w;
  per_layer += 2 * d * 4;  // the two norm vectors
  return per_layer * static_cast<double>(c.n_layers) + static_cast<double>(c.vocab_size) * d * w + d * 4;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Round {
  double ttft_ms = 0, tpot_ms = 0, e2e_ms = 0;
  std::string error;
};

// Runs `batch` requests of isl/osl together and returns mean TTFT, TPOT and end-to-end time.
Round RunBatch(Executor& ex, int batch, int isl, int osl, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Request> reqs;
  for (int b = 0; b < batch; ++b) reqs.push_back(SyntheticRequest(rng, ex.vocab_size(), isl, osl));
  std::vector<Timing> timings;
  Drive(ex, reqs, 0, &timings);
  Round r;
  for (const Timing& t : timings) {
    if (t.finish_reason == "error") r.error = t.error;
    r.ttft_ms += t.ttft_ms() / batch;
    r.e2e_ms += t.e2e_ms() / batch;
    r.tpot_ms += t.tpot_ms() / batch;
  }
  return r;
}

int RunLatency(const BenchArgs& a) {
  const ThroughputArgs& t = a.tp;
  auto cfg = ReadEngineConfig(t.engine_dir);
  if (!cfg.ok()) Fail(cfg.status());
  if (a.batch < 1 || t.isl < 1 || t.osl < 1 || a.iterations < 1) Fail("bench: --batch, --isl, --osl, --iterations must be >= 1");
  const double bytes_per_step = StreamedBytesPerStep(*cfg);

  // Copy bandwidth of this GPU, measured before the engine takes the memory.
  double copy_gbs = 0;
  std::string device = t.exec.device == "auto" ? (CudaAvailable() ? "cuda" : "cpu") : t.exec.device;
  if (device.rfind("cuda", 0) == 0) {
    auto b = MakeCudaBackend(0, DType::kBF16);
    if (b.ok()) {
      auto bw = (*b)->MeasureCopyBandwidth(size_t{1} << 30);
      if (bw.ok()) copy_gbs = *bw;
    }
  }

  ExecutorOptions opts = t.exec;
  opts.max_batch_size = std::max(opts.max_batch_size, a.batch);
  opts.max_num_tokens = std::max(opts.max_num_tokens, std::min(t.isl * a.batch, 16384));
  if (opts.max_seq_len == 0) opts.max_seq_len = t.isl + t.osl + 16;
  opts.enable_prefix_caching = false;  // random prompts: keep every round a full prefill
  std::string gpu;
  std::vector<double> ttft, tpot, e2e;
  {
    auto ex = Executor::Create(t.engine_dir, opts);
    if (!ex.ok()) Fail(ex.status());
    gpu = (*ex)->device_name();
    Round warm = RunBatch(**ex, a.batch, t.isl, std::min(t.osl, 8), t.seed + 999);
    if (!warm.error.empty()) Fail("bench warm-up: " + warm.error);
    for (int i = 0; i < a.iterations; ++i) {
      Round r = RunBatch(**ex, a.batch, t.isl, t.osl, t.seed + i);
      if (!r.error.empty()) Fail("bench: " + r.error);
      ttft.push_back(r.ttft_ms);
      tpot.push_back(r.tpot_ms);
      e2e.push_back(r.e2e_ms);
    }
    (*ex)->Shutdown(true);
  }
  const double m_ttft = Median(ttft), m_tpot = Median(tpot), m_e2e = Median(e2e);
  const double tok_s = m_tpot > 0 ? a.batch * 1000.0 / m_tpot : 0;
  const double weight_gbs = m_tpot > 0 ? bytes_per_step / (m_tpot * 1e-3) / 1e9 : 0;
  json out = {{"mode", "latency"},   {"engine", t.engine_dir}, {"device", gpu},
              {"batch", a.batch},    {"isl", t.isl},           {"osl", t.osl},
              {"iterations", a.iterations},
              {"ttft_ms", m_ttft},   {"tpot_ms", m_tpot},      {"decode_step_ms", m_tpot},
              {"e2e_ms", m_e2e},     {"decode_tokens_per_s", tok_s},
              {"output_tokens_per_s", m_e2e > 0 ? a.batch * t.osl * 1000.0 / m_e2e : 0},
              {"bytes_per_step_gb", bytes_per_step / 1e9}, {"weight_stream_gbs", weight_gbs},
              {"copy_bandwidth_gbs", copy_gbs},
              {"pct_of_copy_bandwidth", copy_gbs > 0 ? 100.0 * weight_gbs / copy_gbs : 0}};

  if (a.batch == 1 && a.single_path) {
    EngineOptions eo;
    eo.device = t.exec.device;
    eo.f32_activations = t.exec.f32_activations;
    eo.max_seq_len = t.isl + t.osl + 16;
    eo.max_num_tokens = std::max(t.isl, 512);
    auto engine = Engine::Open(t.engine_dir, eo);
    if (!engine.ok()) Fail(engine.status());
    std::mt19937_64 rng(t.seed);
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>((*engine)->vocab_size() - 1));
    std::vector<int32_t> prompt(t.isl);
    GenerateOptions g;
    g.sampling.temperature = 0;
    g.ignore_eos = true;
    std::vector<double> s_ttft, s_tps;
    for (int i = 0; i <= a.iterations; ++i) {
      for (auto& x : prompt) x = tok(rng);
      g.max_tokens = i == 0 ? std::min(t.osl, 8) : t.osl;  // round 0 warms up
      auto r = (*engine)->Generate(prompt, g);
      if (!r.ok()) Fail(r.status());
      if (i == 0) continue;
      s_ttft.push_back(r->ttft_ms);
      s_tps.push_back(r->decode_tokens_per_s);
    }
    const double sp = Median(s_tps);
    out["single_request"] = {{"ttft_ms", Median(s_ttft)},
                             {"decode_tokens_per_s", sp},
                             {"weight_stream_gbs", sp * bytes_per_step / 1e9},
                             {"pct_of_copy_bandwidth", copy_gbs > 0 ? 100.0 * sp * bytes_per_step / 1e9 / copy_gbs : 0},
                             {"executor_vs_single", sp > 0 ? tok_s / sp : 0}};
  }
  if (t.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("kiln bench (latency) on %s: batch %d, ISL %d, OSL %d, median of %d\n", gpu.c_str(), a.batch, t.isl,
                t.osl, a.iterations);
    std::printf("  TTFT %9.2f ms   TPOT (decode step) %8.3f ms   decode %9.1f tokens/s\n", m_ttft, m_tpot, tok_s);
    std::printf("  weights streamed %.2f GB/step at %.0f GB/s", bytes_per_step / 1e9, weight_gbs);
    if (copy_gbs > 0) std::printf(" = %.1f%% of the measured copy bandwidth (%.0f GB/s)", 100 * weight_gbs / copy_gbs, copy_gbs);
    std::printf("\n");
    if (out.contains("single_request")) {
      const auto& s = out["single_request"];
      std::printf("  single-request path: TTFT %.2f ms, decode %.1f tokens/s (executor/single = %.3f)\n",
                  s["ttft_ms"].get<double>(), s["decode_tokens_per_s"].get<double>(),
                  s["executor_vs_single"].get<double>());
    }
  }
  std::fflush(stdout);
  return 0;
}

void SetupBench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Benchmark an engine: latency (default) or --mode throughput");
  auto a = std::make_shared<BenchArgs>();
  AddThroughputFlags(cmd, &a->tp);
  cmd->add_option("--mode", a->mode, "latency | throughput")->check(CLI::IsMember({"latency", "throughput"}));
  cmd->add_option("--batch", a->batch, "latency: requests decoding together");
  cmd->add_option("--iterations", a->iterations, "latency: timed rounds (median reported)");
  cmd->add_flag("!--no-single-path", a->single_path, "latency, batch 1: skip the single-request comparison");
  cmd->callback([a] {
    const int rc = a->mode == "throughput" ? RunThroughputBench(a->tp) : RunLatency(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

KILN_REGISTER_COMMAND(SetupBench);

}  // namespace
}  // namespace kiln::cli
