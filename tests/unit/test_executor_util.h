// Helpers for the executor tests: engines built once per run from the shared
// fixtures, the single-request reference (kiln::Engine::Generate), and running
// a batch through an Executor.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "builder/builder.h"
#include "test_util.h"
#include "kiln/engine.h"
#include "kiln/executor.h"

namespace kiln::testing_exec {

using kiln::test::SharedDir;

// Builds (once per process) the named engine: "stories" (stories260K with its
// tokenizer), "llama" (hf-tiny/llama, f32), "mistral_sliding" (hf-tiny, window
// 8, f32).
inline const std::string& EngineDir(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::string> built;
  static const std::filesystem::path root = [] {
    auto p = std::filesystem::temp_directory_path() / ("kiln_exec_tests_" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  static struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(root, ec);
    }
  } cleanup;
  std::lock_guard<std::mutex> lk(mu);
  auto it = built.find(name);
  if (it != built.end()) return it->second;
  BuildOptions o;
  o.out = (root / name).string();
  std::string base = name;
  if (base.size() > 5 && base.substr(base.size() - 5) == ".bf16") {  // "<name>.bf16": a bf16 engine
    base.resize(base.size() - 5);
    o.dtype = "bf16";
  }
  if (base == "stories") {
    o.checkpoint = SharedDir() + "/fixtures/stories260K-hf";
    o.tokenizer = SharedDir() + "/models/stories260K/tok512.model";
  } else {
    o.checkpoint = SharedDir() + "/fixtures/hf-tiny/" + base;
    if (o.dtype == "auto") o.dtype = "f32";
  }
  Status s = BuildEngine(o);
  EXPECT_TRUE(s.ok()) << s.message();
  return built[name] = o.out;
}

struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  std::string finish_reason;
  RequestStats stats;
  std::vector<float> logprobs;
  std::vector<std::vector<TokenLogprob>> top;
  int events = 0;
  int finals = 0;
};

inline GenerateOptions ToGenerate(const Request& r) {
  GenerateOptions g;
  g.sampling = r.sampling;
  g.max_tokens = r.max_tokens;
  g.stop = r.stop;
  g.stop_token_ids = r.stop_token_ids;
  g.ignore_eos = r.ignore_eos;
  return g;
}

// Each request alone through the single-request path.
inline std::vector<GenerateResult> Reference(const std::string& dir, const std::vector<Request>& reqs) {
  EngineOptions eo;
  eo.device = "cpu";
  auto engine = Engine::Open(dir, eo);
  EXPECT_TRUE(engine.ok()) << engine.status().message();
  std::vector<GenerateResult> out;
  for (const Request& r : reqs) {
    auto g = (*engine)->Generate(r.prompt, ToGenerate(r));
    EXPECT_TRUE(g.ok()) << g.status().message();
    out.push_back(g.ok() ? g.value() : GenerateResult{});
  }
  return out;
}

// Collects the events of many requests (callbacks run on the step-loop thread).
class Collector {
 public:
  RequestCallback Callback(size_t index) {
    return [this, index](const RequestEvent& ev) {
      std::lock_guard<std::mutex> lk(mu_);
      Result& r = results_[index];
      ++r.events;
      if (ev.token >= 0) {
        r.tokens.push_back(ev.token);
        r.logprobs.push_back(ev.logprob);
        r.top.push_back(ev.top_logprobs);
      }
      r.text += ev.text_delta;
      if (ev.finished) {
        ++r.finals;
        r.finish_reason = ev.finish_reason;
        r.stats = ev.stats;
      }
    };
  }
  void Resize(size_t n) { results_.resize(n); }
  std::vector<Result>& results() { return results_; }

 private:
  std::mutex mu_;
  std::vector<Result> results_;
};

inline std::vector<Result> RunAll(Executor& ex, const std::vector<Request>& reqs) {
  Collector c;
  c.Resize(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto id = ex.Enqueue(reqs[i], c.Callback(i));
    EXPECT_TRUE(id.ok()) << id.status().message();
  }
  ex.WaitAll();
  return std::move(c.results());
}

inline std::unique_ptr<Executor> MakeExecutor(const std::string& dir, ExecutorOptions o,
                                              const std::string& device = "cpu") {
  o.device = device;
  auto ex = Executor::Create(dir, o);
  EXPECT_TRUE(ex.ok()) << ex.status().message();
  return ex.ok() ? std::move(ex).value() : nullptr;
}

// n requests of random prompt lengths in [1, max_prompt] and outputs in [1,
// max_out]; every third one samples (seeded) instead of greedy.
inline std::vector<Request> RandomRequests(int n, int64_t vocab, int max_prompt, int max_out, uint32_t seed,
                                           bool with_sampling = true) {
  std::mt19937 g(seed);
  std::vector<Request> reqs;
  for (int i = 0; i < n; ++i) {
    Request r;
    const int len = std::uniform_int_distribution<int>(1, max_prompt)(g);
    r.prompt.push_back(1);  // BOS
    for (int k = 1; k < len; ++k) r.prompt.push_back(std::uniform_int_distribution<int>(3, vocab - 1)(g));
    r.max_tokens = std::uniform_int_distribution<int>(1, max_out)(g);
    r.sampling.temperature = 0.0f;
    if (with_sampling && i % 3 == 2) {
      r.sampling.temperature = 0.9f;
      r.sampling.top_p = 0.95f;
      r.sampling.seed = 1000 + i;
    }
    reqs.push_back(std::move(r));
  }
  return reqs;
}

inline void ExpectSame(const std::vector<GenerateResult>& ref, const std::vector<Result>& got,
                       bool compare_text) {
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(ref[i].tokens, got[i].tokens) << "request " << i;
    EXPECT_EQ(ref[i].finish_reason, got[i].finish_reason) << "request " << i;
    EXPECT_EQ(got[i].finals, 1) << "request " << i;
    if (compare_text) EXPECT_EQ(ref[i].text, got[i].text) << "request " << i;
  }
}

}  // namespace kiln::testing_exec
