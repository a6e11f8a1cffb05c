// The in-flight batching executor against the single-request path on the CPU
// backend: many requests at once, chunked prefill, prefix caching, preemption
// under a tiny KV budget, shuffled physical blocks, sliding-window models,
// cancellation, streaming and logprobs.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "sampling/sampler.h"
#include "test_executor_util.h"

namespace kiln {
namespace {

using namespace testing_exec;

void ExpectNoLeak(Executor& ex) {
  const ExecutorMetrics m = ex.Metrics();
  EXPECT_EQ(m.kv_blocks_used, 0) << "blocks leaked";
  EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.waiting, 0);
}

struct Case {
  const char* engine;
  int64_t vocab;
};

class ExecutorEquality : public ::testing::TestWithParam<Case> {};

// 50 random requests of mixed prompt/output lengths, all queued at once, small
// steps so that prefill chunks and decodes share steps: each equals its run
// alone (greedy and seeded sampling).
TEST_P(ExecutorEquality, FiftyRandomRequestsMatchSingleRequestPath) {
  const Case c = GetParam();
  const std::string& dir = EngineDir(c.engine);
  auto reqs = RandomRequests(50, c.vocab, 60, 40, 7);
  auto ref = Reference(dir, reqs);
  ExecutorOptions o;
  o.max_num_tokens = 64;
  o.max_batch_size = 16;
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  auto got = RunAll(*ex, reqs);
  ExpectSame(ref, got, std::string(c.engine) == "stories");
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].stats.prompt_tokens, static_cast<int>(reqs[i].prompt.size()));
    EXPECT_EQ(got[i].stats.generated_tokens, static_cast<int>(got[i].tokens.size()));
  }
  const ExecutorMetrics m = ex->Metrics();
  EXPECT_EQ(m.requests_finished, 50u);
  EXPECT_GT(m.steps, 0u);
  ExpectNoLeak(*ex);
}

// Chunked prefill (8-token steps) and unchunked prefill give the same outputs.
TEST_P(ExecutorEquality, ChunkedPrefillEqualsUnchunked) {
  const Case c = GetParam();
  const std::string& dir = EngineDir(c.engine);
  auto reqs = RandomRequests(16, c.vocab, 70, 12, 11);
  ExecutorOptions chunked;
  chunked.max_num_tokens = 8;
  chunked.enable_prefix_caching = false;
  ExecutorOptions whole;
  whole.max_num_tokens = 1024;
  whole.enable_chunked_prefill = false;
  whole.enable_prefix_caching = false;
  auto a = MakeExecutor(dir, chunked);
  auto b = MakeExecutor(dir, whole);
  ASSERT_TRUE(a && b);
  auto ra = RunAll(*a, reqs);
  auto rb = RunAll(*b, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(ra[i].tokens, rb[i].tokens) << "request " << i;
    EXPECT_EQ(ra[i].finish_reason, rb[i].finish_reason) << "request " << i;
  }
  ExpectSame(Reference(dir, reqs), ra, false);
  ExpectNoLeak(*a);
  ExpectNoLeak(*b);
}

// Physical blocks handed out in shuffled order: same outputs.
TEST_P(ExecutorEquality, ShuffledBlocksGiveIdenticalOutputs) {
  const Case c = GetParam();
  const std::string& dir = EngineDir(c.engine);
  auto reqs = RandomRequests(20, c.vocab, 50, 20, 13);
  ExecutorOptions o;
  o.shuffle_blocks = true;
  o.block_size = 4;
  o.max_num_tokens = 32;
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  ExpectSame(Reference(dir, reqs), RunAll(*ex, reqs), false);
  ExpectNoLeak(*ex);
}

// A KV budget far below the load: MAX_UTILIZATION preempts (recompute) and
// still finishes every request with its single-request output;
// GUARANTEED_NO_EVICT never preempts.
TEST_P(ExecutorEquality, TinyKvBudgetPreemptsAndCompletes) {
  const Case c = GetParam();
  const std::string& dir = EngineDir(c.engine);
  auto reqs = RandomRequests(16, c.vocab, 24, 16, 17);
  for (auto& r : reqs) r.ignore_eos = true;
  auto ref = Reference(dir, reqs);
  for (const char* policy : {"max_utilization", "guaranteed_no_evict"}) {
    SCOPED_TRACE(policy);
    ExecutorOptions o;
    o.block_size = 4;
    o.max_num_tokens = 48;
    o.scheduler_policy = policy;
    // Room for 12 blocks (48 positions): one or two requests at a time (each needs <= 10).
    auto probe = MakeExecutor(dir, o);
    ASSERT_TRUE(probe);
    const size_t per_block = probe->memory_plan().kv_cache / probe->memory_plan().kv_blocks;
    probe.reset();
    o.kv_cache_bytes = static_cast<int64_t>(per_block * 12);
    auto ex = MakeExecutor(dir, o);
    ASSERT_TRUE(ex);
    EXPECT_EQ(ex->memory_plan().kv_blocks, 12);
    auto got = RunAll(*ex, reqs);
    ExpectSame(ref, got, false);
    const ExecutorMetrics m = ex->Metrics();
    if (std::string(policy) == "max_utilization") {
      EXPECT_GT(m.preemptions, 0u);
      int per_request = 0;
      for (const auto& r : got) per_request += r.stats.preemptions;
      EXPECT_EQ(static_cast<uint64_t>(per_request), m.preemptions);
    } else {
      EXPECT_EQ(m.preemptions, 0u);
    }
    ExpectNoLeak(*ex);
  }
}

INSTANTIATE_TEST_SUITE_P(Executor, ExecutorEquality,
                         ::testing::Values(Case{"stories", 512}, Case{"llama", 1000}),
                         [](const auto& info) { return std::string(info.param.engine); });

// A request whose prompt shares full blocks with an earlier one skips their
// prefill, counts the skipped tokens, and produces the same output.
TEST(ExecutorPrefixCache, HitGivesIdenticalOutputAndCountsSkippedTokens) {
  const std::string& dir = EngineDir("stories");
  Request a;
  a.prompt = {1};
  for (int i = 0; i < 40; ++i) a.prompt.push_back(10 + (i * 7) % 400);
  a.max_tokens = 10;
  a.sampling.temperature = 0;
  Request b = a;
  for (int i = 0; i < 5; ++i) b.prompt.push_back(20 + i);
  Request same = a;  // the identical prompt: all but the block holding the last token
  ExecutorOptions o;
  o.block_size = 16;
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  auto ref = Reference(dir, {a, b, same});
  auto ra = RunAll(*ex, {a});
  EXPECT_EQ(ra[0].stats.cached_prompt_tokens, 0);
  auto rb = RunAll(*ex, {b});
  EXPECT_EQ(rb[0].stats.cached_prompt_tokens,
            32);  // 46 tokens: two full blocks shared
  auto rs = RunAll(*ex, {same});
  EXPECT_EQ(rs[0].stats.cached_prompt_tokens,
            32);  // 41 tokens: blocks 0-1 (never the last token)
  ExpectSame(ref, {ra[0], rb[0], rs[0]}, true);
  const ExecutorMetrics m = ex->Metrics();
  EXPECT_EQ(m.cached_prompt_tokens, 64u);
  EXPECT_GE(m.prefix_cache_hits, 64u);
  EXPECT_GT(m.prefix_cache_queries, m.prefix_cache_hits);
  ExpectNoLeak(*ex);

  // Disabled: nothing is skipped.
  o.enable_prefix_caching = false;
  auto off = MakeExecutor(dir, o);
  ASSERT_TRUE(off);
  RunAll(*off, {a});
  EXPECT_EQ(RunAll(*off, {b})[0].stats.cached_prompt_tokens, 0);
}

// Many requests sharing a long system prefix, queued together: hits while
// others still run.
TEST(ExecutorPrefixCache, SharedPrefixUnderLoadMatchesReference) {
  const std::string& dir = EngineDir("llama");
  auto reqs = RandomRequests(12, 1000, 20, 16, 23);
  std::vector<int32_t> prefix = {1};
  for (int i = 0; i < 37; ++i) prefix.push_back(100 + i * 3);
  for (auto& r : reqs) r.prompt.insert(r.prompt.begin(), prefix.begin(), prefix.end());
  ExecutorOptions o;
  o.block_size = 8;
  o.max_num_tokens = 64;
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  auto got = RunAll(*ex, reqs);
  ExpectSame(Reference(dir, reqs), got, false);
  EXPECT_GT(ex->Metrics().cached_prompt_tokens, 0u);
  ExpectNoLeak(*ex);
}

// Sliding-window model (window 8): blocks outside the window are given back as
// decoding goes on, and the outputs still equal the single-request path (which
// keeps every block).
TEST(ExecutorSlidingWindow, ReleasesBlocksAndMatchesReference) {
  const std::string& dir = EngineDir("mistral_sliding");
  auto reqs = RandomRequests(10, 1000, 30, 40, 29);
  for (auto& r : reqs) r.ignore_eos = true;
  ExecutorOptions o;
  o.block_size = 4;
  o.max_num_tokens = 16;
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  // One long request alone: with a window of 8 it never holds more than 4
  // blocks of 4.
  Request longr;
  longr.prompt = {1, 5, 6, 7};
  longr.max_tokens = 60;
  longr.ignore_eos = true;
  longr.sampling.temperature = 0;
  std::atomic<int64_t> max_used{0};
  Executor* exp = ex.get();
  Collector c;
  c.Resize(1);
  auto inner = c.Callback(0);
  ASSERT_TRUE(exp->Enqueue(longr,
                           [&](const RequestEvent& ev) {
                             inner(ev);
                             max_used = std::max<int64_t>(max_used, exp->Metrics().kv_blocks_used);
                           })
                  .ok());
  ex->WaitAll();
  EXPECT_LE(max_used.load(), 4);
  ExpectSame(Reference(dir, {longr}), c.results(), false);
  ExpectSame(Reference(dir, reqs), RunAll(*ex, reqs), false);
  ExpectNoLeak(*ex);
}

// Cancelling mid-stream ends the request with "cancelled" and frees its blocks;
// cancelling a queued request works too; unknown ids are ignored.
TEST(ExecutorCancel, MidStreamFreesBlocks) {
  const std::string& dir = EngineDir("stories");
  ExecutorOptions o;
  o.max_batch_size = 1;  // the second request waits in the queue
  auto ex = MakeExecutor(dir, o);
  ASSERT_TRUE(ex);
  Request r;
  r.prompt = {1, 20, 30, 40};
  r.max_tokens = 400;
  r.ignore_eos = true;
  r.sampling.temperature = 0;
  Collector c;
  c.Resize(2);
  auto inner = c.Callback(0);
  Executor* exp = ex.get();
  std::atomic<uint64_t> id0{0};
  std::atomic<int> seen{0};
  auto id = ex->Enqueue(r, [&](const RequestEvent& ev) {
    inner(ev);
    if (++seen == 5) exp->Cancel(id0.load());
  });
  ASSERT_TRUE(id.ok());
  id0 = id.value();
  auto id2 = ex->Enqueue(r, c.Callback(1));
  ASSERT_TRUE(id2.ok());
  ex->Cancel(id2.value());
  ex->Cancel(987654);  // unknown: ignored
  ex->WaitAll();
  auto& res = c.results();
  EXPECT_EQ(res[0].finish_reason, "cancelled");
  EXPECT_EQ(res[0].finals, 1);
  EXPECT_GE(res[0].tokens.size(), 4u);
  EXPECT_LT(res[0].tokens.size(), 100u);
  EXPECT_EQ(res[1].finish_reason, "cancelled");
  EXPECT_EQ(ex->Metrics().requests_cancelled, 2u);
  ExpectNoLeak(*ex);
}

// Stop strings cut the streamed text like the single-request path; streamed
// deltas add up to the final text; logprobs are the log-softmax of the raw
// logits.
TEST(ExecutorStreaming, StopStringsTextAndLogprobs) {
  const std::string& dir = EngineDir("stories");
  EngineOptions eo;
  eo.device = "cpu";
  auto engine = Engine::Open(dir, eo);
  ASSERT_TRUE(engine.ok());
  Request r;
  r.prompt = (*engine)->Encode("Once upon a time", true).value();
  r.max_tokens = 60;
  r.sampling.temperature = 0;
  r.logprobs = 3;
  auto plain = (*engine)->Generate(r.prompt, ToGenerate(r)).value();
  ASSERT_GT(plain.text.size(), 20u);
  // Stop at a word from the middle of the greedy text.
  const std::string stop = plain.text.substr(plain.text.size() / 2, 4);
  Request rs = r;
  rs.stop = {stop};
  auto ex = MakeExecutor(dir, {});
  ASSERT_TRUE(ex);
  auto got = RunAll(*ex, {r, rs});
  ExpectSame(Reference(dir, {r, rs}), got, true);
  EXPECT_EQ(got[1].finish_reason, "stop");
  EXPECT_EQ(got[1].text.find(stop), std::string::npos);
  // Logprobs against the engine's logits of every position.
  std::vector<int32_t> all = r.prompt;
  all.insert(all.end(), got[0].tokens.begin(), got[0].tokens.end());
  auto logits = (*engine)->Logits(all, false).value();
  const size_t V = 512;
  for (size_t i = 0; i < got[0].tokens.size(); ++i) {
    std::vector<float> lp(V);
    LogSoftmax(std::span<const float>(logits.data() + (r.prompt.size() - 1 + i) * V, V), lp);
    EXPECT_NEAR(got[0].logprobs[i], lp[got[0].tokens[i]], 1e-4);
    ASSERT_EQ(got[0].top[i].size(), 3u);
    EXPECT_EQ(got[0].top[i][0].token,
              got[0].tokens[i]);  // greedy picks the top one
    EXPECT_GE(got[0].top[i][0].logprob, got[0].top[i][1].logprob);
    EXPECT_GE(got[0].top[i][1].logprob, got[0].top[i][2].logprob);
  }
  ExpectNoLeak(*ex);
}

// Bad requests are rejected at once with a message naming the field.
TEST(ExecutorValidation, RejectsBadRequests) {
  auto ex = MakeExecutor(EngineDir("llama"), {});
  ASSERT_TRUE(ex);
  Request r;
  r.prompt = {1, 2000};
  auto e = ex->Enqueue(r, {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("vocabulary"), std::string::npos);
  r.prompt = {1, 2};
  r.max_tokens = 1000;
  e = ex->Enqueue(r, {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("max_seq_len"), std::string::npos);
  r.max_tokens = 4;
  r.sampling.top_p = 0;
  EXPECT_FALSE(ex->Enqueue(r, {}).ok());
  r.sampling.top_p = 1;
  r.stop = {"x"};  // this engine has no tokenizer
  EXPECT_FALSE(ex->Enqueue(r, {}).ok());
  EXPECT_EQ(ex->Metrics().requests_rejected, 4u);
  ExecutorOptions bad;
  bad.scheduler_policy = "lifo";
  EXPECT_FALSE(Executor::Create(EngineDir("llama"), bad).ok());
  bad = {};
  bad.block_size = 0;
  EXPECT_FALSE(Executor::Create(EngineDir("llama"), bad).ok());
}

// Enqueue from several threads while the loop runs; Shutdown(drain) finishes
// everything, and Enqueue afterwards is refused. A zero-token request finishes
// at once.
TEST(ExecutorThreads, ConcurrentEnqueueAndDrainingShutdown) {
  const std::string& dir = EngineDir("llama");
  auto reqs = RandomRequests(24, 1000, 20, 10, 31);
  auto ref = Reference(dir, reqs);
  auto ex = MakeExecutor(dir, {});
  ASSERT_TRUE(ex);
  Collector c;
  c.Resize(reqs.size() + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < reqs.size(); i += 4) EXPECT_TRUE(ex->Enqueue(reqs[i], c.Callback(i)).ok());
    });
  for (auto& th : threads) th.join();
  Request zero = reqs[0];
  zero.max_tokens = 0;
  EXPECT_TRUE(ex->Enqueue(zero, c.Callback(reqs.size())).ok());
  ex->Shutdown(true);
  auto& res = c.results();
  EXPECT_EQ(res.back().finish_reason, "length");
  EXPECT_TRUE(res.back().tokens.empty());
  res.pop_back();
  ExpectSame(ref, res, false);
  EXPECT_FALSE(ex->Enqueue(reqs[0], {}).ok());
  ExpectNoLeak(*ex);
}

// Shutdown without drain cancels what is queued or running.
TEST(ExecutorThreads, ShutdownWithoutDrainCancels) {
  auto ex = MakeExecutor(EngineDir("stories"), {});
  ASSERT_TRUE(ex);
  auto reqs = RandomRequests(8, 512, 10, 5, 37);
  for (auto& r : reqs) {
    r.max_tokens = 300;
    r.ignore_eos = true;
  }
  Collector c;
  c.Resize(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) ASSERT_TRUE(ex->Enqueue(reqs[i], c.Callback(i)).ok());
  ex->Shutdown(false);
  for (const auto& r : c.results()) {
    EXPECT_EQ(r.finals, 1);
    EXPECT_EQ(r.finish_reason, "cancelled");
  }
  ExpectNoLeak(*ex);
}

TEST(ExecutorMemory, PlanIsReported) {
  ExecutorOptions o;
  o.kv_cache_bytes = 1 << 20;
  auto ex = MakeExecutor(EngineDir("llama"), o);
  ASSERT_TRUE(ex);
  const MemoryPlan p = ex->memory_plan();
  EXPECT_GT(p.weights, 0u);
  EXPECT_GT(p.activations, 0u);
  EXPECT_GT(p.workspace, 0u);
  EXPECT_LE(p.kv_cache, size_t{1} << 20);
  EXPECT_GT(p.kv_blocks, 0);
  EXPECT_EQ(p.block_size, 16);
  EXPECT_EQ(p.max_seq_len, 256);
  EXPECT_EQ(ex->device_name().rfind("cpu", 0), 0u);
}

}  // namespace
}  // namespace kiln
