// The in-flight batching executor: many requests of different lengths share every step.
// Thread-safe: Enqueue/Cancel/Metrics may be called from any thread; one internal step loop
// thread runs the model. Callbacks run on the step-loop thread and must not block.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/sampling_params.h"
#include "kiln/status.h"

namespace kiln {

// Run-time knobs: none needs an engine rebuild.
struct ExecutorOptions {
  std::string device = "auto";        // auto | cpu | cuda | cuda:N
  bool f32_activations = false;
  int max_batch_size = 256;           // sequences per step
  int max_num_tokens = 8192;          // tokens per step (prefill chunks + decode tokens)
  int64_t max_seq_len = 0;            // 0 = the model's max positions
  double kv_cache_fraction = 0.90;    // of the memory free after weights and activations
  int64_t kv_cache_bytes = 0;         // hard cap (0 = none)
  int block_size = 16;                // tokens per KV block
  bool enable_prefix_caching = true;
  // guaranteed_no_evict (admit what can finish; no recompute) | max_utilization (admit greedily,
  // preempt by recompute when blocks run out). See runtime/scheduler.h.
  std::string scheduler_policy = "guaranteed_no_evict";
  std::string schedule_order = "fcfs";  // fcfs | priority (Request::priority, higher first; FCFS among equals)
  bool enable_chunked_prefill = true;
  int max_queue_size = 0;             // waiting requests accepted (0 = unbounded)
  bool shuffle_blocks = false;        // testing: hand out physical blocks in shuffled order
  bool show_progress = false;
};

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;         // stop strings (cut from the text)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int logprobs = 0;                      // report the top-N alternatives of each token (0 = just the chosen)
  int priority = 0;                      // higher first under the priority order
  bool detokenize = true;                // produce text deltas
  bool return_logprob = true;            // fill RequestEvent::logprob (costs a log-softmax per token);
                                         // false and logprobs == 0: logprob stays 0
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

struct RequestStats {
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // prefill skipped thanks to the prefix cache
  int generated_tokens = 0;
  int preemptions = 0;
  double queue_ms = 0, ttft_ms = 0, e2e_ms = 0;
};

// One event per generated token; the last one has finished = true. The final event carries the
// request's last token when it ends on one (length, stop string); else token = -1 (EOS or a stop
// token, which are not part of the output; cancel; error).
struct RequestEvent {
  uint64_t request_id = 0;
  int32_t token = -1;
  std::string text_delta;
  float logprob = 0.0f;                     // of the chosen token
  std::vector<TokenLogprob> top_logprobs;   // when Request::logprobs > 0
  bool finished = false;
  std::string finish_reason;                // "stop" | "length" | "cancelled" | "error"
  std::string error;                        // when finish_reason == "error"
  RequestStats stats;                       // filled on the final event
};

using RequestCallback = std::function<void(const RequestEvent&)>;

struct ExecutorMetrics {
  uint64_t requests_finished = 0, requests_cancelled = 0, requests_failed = 0, requests_rejected = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0, cached_prompt_tokens = 0, preemptions = 0;
  int running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0;
  uint64_t prefix_cache_hits = 0, prefix_cache_queries = 0;
  uint64_t steps = 0;
};

// Memory planned at start-up (reported by the CLI and the server).
struct MemoryPlan {
  size_t weights = 0, kv_cache = 0, activations = 0, workspace = 0;
  int64_t kv_blocks = 0;
  int block_size = 0;
  int64_t max_seq_len = 0;
};

class Executor {
 public:
  static Expected<std::unique_ptr<Executor>> Create(const std::string& engine_dir, const ExecutorOptions& options);
  virtual ~Executor() = default;

  // Validates and queues a request; returns its id. Errors (bad ids, prompt + max_tokens over
  // max_seq_len, queue full -> kResourceExhausted-like kOutOfMemory code) come back at once.
  virtual Expected<uint64_t> Enqueue(Request request, RequestCallback on_event) = 0;
  // Cancels a queued or running request; its blocks are freed; a final "cancelled" event follows.
  virtual void Cancel(uint64_t request_id) = 0;
  // Blocks until every request enqueued so far has finished.
  virtual void WaitAll() = 0;
  // Stops accepting requests; drain = finish running and waiting ones first, else cancel them.
  virtual void Shutdown(bool drain) = 0;

  virtual ExecutorMetrics Metrics() const = 0;
  virtual MemoryPlan memory_plan() const = 0;
  virtual std::string device_name() const = 0;
  virtual int64_t max_seq_len() const = 0;
  virtual int64_t vocab_size() const = 0;

  // Tokenizer access (errors when the engine has none).
  virtual Expected<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const = 0;
  virtual Expected<std::string> Decode(std::span<const int32_t> ids) const = 0;
  // Renders the engine's chat template; messages as JSON text: [{"role":..,"content":..}, ...].
  virtual Expected<std::string> ApplyChatTemplate(const std::string& messages_json, bool add_generation_prompt) const = 0;
  virtual int32_t bos_id() const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;
};

}  // namespace kiln
