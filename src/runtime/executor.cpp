// The in-flight batching executor: a queue of requests, one step-loop thread
// that schedules (scheduler.h), packs the step (step_builder.h), runs the
// model, samples each sequence that reached its last token, and streams events.
// Draw n of a request depends only on (seed, n), and every op is
// batch-invariant on the CPU backend, so outputs equal the single-request path.
#include "kiln/executor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/block_manager.h"
#include "runtime/device_sampling.h"
#include "runtime/executor_plan.h"
#include "runtime/kv_cache.h"
#include "runtime/open_backend.h"
#include "runtime/scheduler.h"
#include "runtime/sequence.h"
#include "runtime/step_builder.h"
#include "runtime/stop_matcher.h"
#include "runtime/special_tokens.h"
#include "runtime/step_log.h"
#include "sampling/sampler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct RequestState {
  Sequence seq;
  Request req;
  RequestCallback cb;
  std::optional<Sampler> sampler;
  std::unique_ptr<IncrementalDetokenizer> detok;
  std::optional<StopMatcher> stops;
  std::vector<int32_t> stop_ids;  // EOS (unless ignore_eos) and stop_token_ids
  Clock::time_point t_enqueue, t_scheduled, t_first;
  bool scheduled = false, got_first = false;
  // This step's draw (filled in parallel, consumed in order).
  int32_t next = -1;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

class ExecutorImpl final : public Executor {
 public:
  explicit ExecutorImpl(const ExecutorOptions& o) : opt_(o) {}
  ~ExecutorImpl() override { Shutdown(false); }

  Status Init(const std::string& dir);

  Expected<uint64_t> Enqueue(Request request, RequestCallback on_event) override;
  void Cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(id);
    cv_loop_.notify_one();
  }
  void WaitAll() override {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return n_done_ >= n_enqueued_ || loop_exited_; });
  }
  void Shutdown(bool drain) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      accepting_ = false;
      stop_ = true;
      if (!drain) cancel_all_ = true;
      cv_loop_.notify_one();
    }
    if (loop_.joinable() && loop_.get_id() != std::this_thread::get_id()) loop_.join();
  }

  ExecutorMetrics Metrics() const override {
    std::lock_guard<std::mutex> lk(mu_);
    ExecutorMetrics m = metrics_;
    m.waiting += static_cast<int>(inbox_.size());
    return m;
  }
  MemoryPlan memory_plan() const override { return plan_; }
  std::string device_name() const override { return backend_->name(); }
  int64_t max_seq_len() const override { return max_seq_len_; }
  int64_t vocab_size() const override { return model_->config().vocab_size; }

  Expected<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const override {
    if (!tok_)
      return NotFound(
          "this engine has no tokenizer (rebuild with --tokenizer, "
          "or pass token ids)");
    return tok_->Encode(text, add_special);
  }
  Expected<std::string> Decode(std::span<const int32_t> ids) const override {
    if (!tok_) return NotFound("this engine has no tokenizer (rebuild with --tokenizer)");
    return tok_->Decode(ids);
  }
  Expected<std::string> ApplyChatTemplate(const std::string& messages_json,
                                          bool add_generation_prompt) const override {
    if (!chat_template_) return chat_template_status_;
    nlohmann::ordered_json messages;
    try {
      messages = nlohmann::ordered_json::parse(messages_json);
    } catch (const std::exception& e) {
      return InvalidArgument(std::string("messages: not valid JSON: ") + e.what());
    }
    if (!messages.is_array()) return InvalidArgument("messages: expected a JSON array of {role, content}");
    ChatTemplateOptions opt;
    opt.add_generation_prompt = add_generation_prompt;
    return chat_template_->Render(messages, opt);
  }
  int32_t bos_id() const override { return ResolveBosId(model_->config(), tok_.get()); }
  std::vector<int32_t> eos_ids() const override { return ResolveEosIds(model_->config(), tok_.get()); }

 private:
  void Loop();
  void RunStep();
  void SampleRows(const std::vector<RequestState*>& rows);
  void HandleToken(RequestState& st);
  void Emit(RequestState& st, RequestEvent& ev);
  // Sends the final event (token: the last token when the request ends on one)
  // and retires it.
  void Finish(RequestState& st, RequestEvent ev, const std::string& reason, const std::string& error = {});
  void PublishMetrics();
  void LogStep(const SchedulerOutput& out, Clock::time_point t_start, Clock::time_point t_scheduled,
               Clock::time_point t_forward);

  ExecutorOptions opt_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<BlockManager> bm_;
  std::unique_ptr<Scheduler> sched_;
  StepBuilder steps_;
  MemoryPlan plan_;
  int64_t max_seq_len_ = 0;
  int64_t vocab_ = 0;
  std::vector<int32_t> eos_;
  std::optional<ChatTemplate> chat_template_;
  Status chat_template_status_;  // why there is none

  // Shared with the callers' threads, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_loop_, cv_done_;
  std::deque<std::unique_ptr<RequestState>> inbox_;
  std::vector<uint64_t> cancels_;
  uint64_t next_id_ = 1, n_enqueued_ = 0, n_done_ = 0;
  bool accepting_ = true, stop_ = false, cancel_all_ = false, loop_exited_ = false;
  ExecutorMetrics metrics_;
  std::thread loop_;

  // Step-loop thread only.
  std::unordered_map<uint64_t, std::unique_ptr<RequestState>> active_;
  ExecutorMetrics counters_;  // cumulative counters, copied into metrics_ each step
  uint64_t arrival_ = 0;
  std::vector<float> logits_;        // [n_logits, vocab] host copy of this step's logits (f32 models)
  std::vector<uint8_t> raw_logits_;  // [n_logits, vocab] in logits_dtype_ (bf16/f16 models)
  DType logits_dtype_ = DType::kF32;
  DeviceBuffer greedy_ids_;          // i32 [max_seqs] device argmax of a greedy step
  std::vector<int32_t> greedy_host_;
  // Where this step's tokens come from: the device argmax (every row plain greedy), the
  // device sampling chain, or the host Sampler over host logits (KILN_HOST_SAMPLING=1, or a
  // row asking for more than kMaxDeviceTopLogprobs top logprobs).
  enum class StepSampling { kGreedy, kDevice, kHost };
  StepSampling step_sampling_ = StepSampling::kHost;
  DeviceSampling device_sampling_;
  bool device_sampling_on_ = true;
  std::vector<SequenceChunk> chunks_;  // this step's packing
  StepLog step_log_;                   // KILN_STEP_LOG
  Clock::time_point last_step_end_{};
};

Status ExecutorImpl::Init(const std::string& dir) {
  const ExecutorOptions& o = opt_;
  if (o.block_size <= 0 || o.block_size > 1024)
    return InvalidArgument("block_size must be in [1, 1024], got " + std::to_string(o.block_size));
  if (o.max_batch_size <= 0) return InvalidArgument("max_batch_size must be positive");
  if (o.max_num_tokens <= 0) return InvalidArgument("max_num_tokens must be positive");
  if (o.max_seq_len < 0) return InvalidArgument("max_seq_len must be >= 0 (0 = the model's max positions)");
  if (!(o.kv_cache_fraction > 0.0 && o.kv_cache_fraction <= 1.0))
    return InvalidArgument("kv_cache_fraction must be in (0, 1], got " + std::to_string(o.kv_cache_fraction));
  if (o.kv_cache_bytes < 0) return InvalidArgument("kv_cache_bytes must be >= 0 (0 = no cap)");
  if (o.max_queue_size < 0) return InvalidArgument("max_queue_size must be >= 0 (0 = unbounded)");
  KILN_ASSIGN_OR_RETURN(CapacityPolicy policy, ParseCapacityPolicy(o.scheduler_policy));
  KILN_ASSIGN_OR_RETURN(ScheduleOrder order, ParseScheduleOrder(o.schedule_order));

  KILN_ASSIGN_OR_RETURN(EngineConfig cfg, ReadEngineConfig(dir));
  const std::string device = ResolveDevice(o.device);
  const bool is_cpu = device == "cpu";
  KILN_ASSIGN_OR_RETURN(backend_, OpenBackend(device, cfg.dtype, o.f32_activations));
  KILN_ASSIGN_OR_RETURN(model_, Model::Load(dir, *backend_, StderrLoadProgress(o.show_progress)));
  const ModelConfig& mc = model_->config();
  vocab_ = mc.vocab_size;
  max_seq_len_ = o.max_seq_len > 0 ? o.max_seq_len : mc.max_position_embeddings;
  if (max_seq_len_ > mc.max_position_embeddings && mc.position == "learned")
    return InvalidArgument("max_seq_len " + std::to_string(max_seq_len_) + " exceeds the model's " +
                           std::to_string(mc.max_position_embeddings) + " learned positions");
  auto tok = LoadTokenizer(dir);
  if (tok.ok()) tok_ = std::move(tok).value();
  eos_ = eos_ids();
  auto ct = ChatTemplate::Load(dir);
  if (ct.ok())
    chat_template_ = std::move(ct).value();
  else
    chat_template_status_ = NotFound("this engine has no chat template: " + ct.status().message());

  // Memory, planned up front: weights, activations and the step workspace
  // first, then the KV cache from what is left.
  StepShape shape;
  shape.max_tokens = o.max_num_tokens;
  shape.max_seqs = std::min(o.max_batch_size, o.max_num_tokens);
  shape.max_blocks_per_seq = (max_seq_len_ + o.block_size - 1) / o.block_size;
  KILN_RETURN_IF_ERROR(model_->Reserve(shape.max_tokens, shape.max_seqs));
  KILN_RETURN_IF_ERROR(steps_.Reserve(*backend_, static_cast<int>(shape.max_tokens),
                                      static_cast<int>(shape.max_seqs),
                                      static_cast<int>(shape.max_blocks_per_seq)));
  KILN_ASSIGN_OR_RETURN(greedy_ids_, AllocBuffer(*backend_, sizeof(int32_t) * static_cast<size_t>(shape.max_seqs)));
  device_sampling_on_ = DeviceSamplingEnabled();
  if (device_sampling_on_)
    KILN_RETURN_IF_ERROR(device_sampling_.Reserve(*backend_, static_cast<int>(shape.max_seqs), vocab_));
  plan_.weights = model_->weight_bytes();
  plan_.activations = ActivationBytes(mc, backend_->act_dtype(), shape.max_tokens, shape.max_seqs);
  plan_.workspace = StepWorkspaceBytes(shape);
  plan_.max_seq_len = max_seq_len_;
  KILN_RETURN_IF_ERROR(PlanKvCache(*backend_, is_cpu, mc, o, &plan_));
  KILN_ASSIGN_OR_RETURN(kv_, KvCache::Create(*backend_, mc, plan_.kv_blocks, o.block_size));

  BlockManagerOptions bo;
  bo.n_blocks = plan_.kv_blocks;
  bo.block_size = o.block_size;
  // Sliding-window sequences give blocks back as they go; their prefixes are
  // not shareable.
  bo.enable_prefix_caching = o.enable_prefix_caching && mc.sliding_window <= 0;
  bo.shuffle_blocks = o.shuffle_blocks;
  bm_ = std::make_unique<BlockManager>(bo);
  SchedulerOptions so;
  so.policy = policy;
  so.order = order;
  so.max_batch_size = static_cast<int>(shape.max_seqs);
  so.max_num_tokens = o.max_num_tokens;
  so.chunked_prefill = o.enable_chunked_prefill;
  so.sliding_window = mc.sliding_window;
  sched_ = std::make_unique<Scheduler>(so, *bm_);
  counters_.kv_blocks_total = plan_.kv_blocks;
  metrics_ = counters_;
  metrics_.kv_blocks_free = plan_.kv_blocks;
  loop_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

Expected<uint64_t> ExecutorImpl::Enqueue(Request r, RequestCallback on_event) {
  auto reject = [&](Status s) -> Expected<uint64_t> {
    std::lock_guard<std::mutex> lk(mu_);
    ++metrics_.requests_rejected;  // kept across PublishMetrics
    return s;
  };
  if (Status s = r.sampling.Validate(); !s.ok()) return reject(s);
  if (r.max_tokens < 0)
    return reject(InvalidArgument("max_tokens must be >= 0, got " + std::to_string(r.max_tokens)));
  if (r.logprobs < 0 || r.logprobs > vocab_)
    return reject(InvalidArgument("logprobs must be in [0, vocab size " + std::to_string(vocab_) + "]"));
  if (r.prompt.empty()) {
    if (bos_id() < 0)
      return reject(InvalidArgument("prompt: empty and the model has no BOS token to start from"));
    r.prompt.push_back(bos_id());
  }
  for (size_t i = 0; i < r.prompt.size(); ++i)
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab_)
      return reject(InvalidArgument("prompt: token id " + std::to_string(r.prompt[i]) + " at index " +
                                    std::to_string(i) + " is outside the vocabulary [0, " +
                                    std::to_string(vocab_) + ")"));
  for (int32_t id : r.stop_token_ids)
    if (id < 0 || id >= vocab_)
      return reject(InvalidArgument("stop_token_ids: " + std::to_string(id) + " is outside the vocabulary"));
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
  if (total > max_seq_len_ || static_cast<int64_t>(r.prompt.size()) >= max_seq_len_)
    return reject(InvalidArgument("prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_tokens (" +
                                  std::to_string(r.max_tokens) + ") exceeds max_seq_len " +
                                  std::to_string(max_seq_len_)));
  const int64_t need_blocks =
      bm_->BlocksFor(std::max<int64_t>(total - 1, static_cast<int64_t>(r.prompt.size())));
  if (need_blocks > plan_.kv_blocks)
    return reject(Status(ErrorCode::kOutOfMemory, "prompt + max_tokens needs " + std::to_string(need_blocks) +
                                                      " KV blocks but the cache holds " +
                                                      std::to_string(plan_.kv_blocks) +
                                                      " (raise kv_cache_bytes / kv_cache_fraction)"));
  if (!r.stop.empty() && !tok_)
    return reject(InvalidArgument("stop: stop strings need an engine with a tokenizer"));
  for (const std::string& s : r.stop)
    if (s.empty()) return reject(InvalidArgument("stop: empty stop string"));

  auto st = std::make_unique<RequestState>();
  st->t_enqueue = Clock::now();
  st->sampler.emplace(r.sampling);
  if (tok_ && (r.detokenize || !r.stop.empty())) {
    st->detok = std::make_unique<IncrementalDetokenizer>(*tok_);
    st->detok->SetPrompt(r.prompt);
  }
  st->stops.emplace(r.stop);
  if (!r.ignore_eos) st->stop_ids = eos_;
  st->stop_ids.insert(st->stop_ids.end(), r.stop_token_ids.begin(), r.stop_token_ids.end());
  st->seq.tokens = r.prompt;
  st->seq.n_prompt = static_cast<int>(r.prompt.size());
  st->seq.max_new_tokens = r.max_tokens;
  st->seq.priority = r.priority;
  st->cb = std::move(on_event);
  st->req = std::move(r);

  std::lock_guard<std::mutex> lk(mu_);
  if (!accepting_) {
    ++metrics_.requests_rejected;
    return Status(ErrorCode::kCancelled, "the executor is shut down");
  }
  if (opt_.max_queue_size > 0 && metrics_.waiting + static_cast<int>(inbox_.size()) >= opt_.max_queue_size) {
    ++metrics_.requests_rejected;
    return Status(ErrorCode::kOutOfMemory, "queue full: max_queue_size " +
                                               std::to_string(opt_.max_queue_size) + " requests are waiting");
  }
  const uint64_t id = next_id_++;
  st->seq.id = id;
  inbox_.push_back(std::move(st));
  ++n_enqueued_;
  cv_loop_.notify_one();
  return id;
}

void ExecutorImpl::Emit(RequestState& st, RequestEvent& ev) {
  ev.request_id = st.seq.id;
  if (!st.cb) return;
  // A throwing callback must not take the step loop (and every other request) down with it.
  try {
    st.cb(ev);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: executor: callback of request %llu threw: %s\n",
                 static_cast<unsigned long long>(st.seq.id), e.what());
  } catch (...) {
    std::fprintf(stderr, "kiln: executor: callback of request %llu threw\n",
                 static_cast<unsigned long long>(st.seq.id));
  }
}

void ExecutorImpl::Finish(RequestState& st, RequestEvent ev, const std::string& reason,
                          const std::string& error) {
  const auto now = Clock::now();
  ev.finished = true;
  ev.finish_reason = reason;
  ev.error = error;
  RequestStats& s = ev.stats;
  s.prompt_tokens = st.seq.n_prompt;
  s.cached_prompt_tokens = st.seq.cached_prompt_tokens;
  s.generated_tokens = st.seq.generated();
  s.preemptions = st.seq.preemptions;
  s.queue_ms = st.scheduled ? Ms(st.t_enqueue, st.t_scheduled) : Ms(st.t_enqueue, now);
  s.ttft_ms = st.got_first ? Ms(st.t_enqueue, st.t_first) : 0.0;
  s.e2e_ms = Ms(st.t_enqueue, now);
  sched_->Remove(&st.seq);
  if (reason == "cancelled")
    ++counters_.requests_cancelled;
  else if (reason == "error")
    ++counters_.requests_failed;
  else
    ++counters_.requests_finished;
  counters_.prompt_tokens += static_cast<uint64_t>(s.prompt_tokens);
  counters_.cached_prompt_tokens += static_cast<uint64_t>(s.cached_prompt_tokens);
  const uint64_t id = st.seq.id;
  Emit(st, ev);
  active_.erase(id);  // st is gone from here on
  PublishMetrics();   // before WaitAll can return: the counters include this
                      // request
  std::lock_guard<std::mutex> lk(mu_);
  ++n_done_;
  cv_done_.notify_all();
}

void ExecutorImpl::Loop() {
  for (;;) {
    std::deque<std::unique_ptr<RequestState>> arrivals;
    std::vector<uint64_t> cancels;
    bool cancel_all = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_loop_.wait(lk, [&] { return stop_ || !inbox_.empty() || !cancels_.empty() || !active_.empty(); });
      arrivals.swap(inbox_);
      cancels.swap(cancels_);
      cancel_all = cancel_all_;
      if (stop_ && arrivals.empty() && active_.empty()) {
        loop_exited_ = true;
        cv_done_.notify_all();
        return;
      }
    }
    for (auto& st : arrivals) {
      RequestState* p = st.get();
      p->seq.arrival = arrival_++;
      active_[p->seq.id] = std::move(st);
      sched_->Add(&p->seq);
      if (p->seq.max_new_tokens == 0) Finish(*p, RequestEvent{}, "length");
    }
    if (cancel_all) {
      cancels.clear();
      for (auto& [id, st] : active_) cancels.push_back(id);
    }
    for (uint64_t id : cancels) {
      auto it = active_.find(id);
      if (it != active_.end()) Finish(*it->second, RequestEvent{}, "cancelled");
    }
    if (!active_.empty()) RunStep();
    PublishMetrics();
  }
}

void ExecutorImpl::RunStep() {
  const auto t_start = Clock::now();
  SchedulerOutput out = sched_->Schedule();
  const auto t_scheduled = Clock::now();
  counters_.preemptions += out.preempted.size();
  const auto now = Clock::now();
  for (Sequence* s : out.admitted) {
    RequestState& st = *active_.at(s->id);
    if (!st.scheduled) {
      st.scheduled = true;
      st.t_scheduled = now;
    }
  }
  if (out.empty()) {
    // Nothing fits even with an empty batch: the head request can never run.
    if (out.preempted.empty() && sched_->n_running() == 0 && !sched_->waiting().empty()) {
      RequestState& st = *active_.at(sched_->waiting().front()->id);
      Finish(st, RequestEvent{}, "error", "the request does not fit in the KV cache");
    }
    return;
  }
  chunks_.clear();
  std::vector<RequestState*> rows;  // [n_logits] the request of each logits row
  for (const ScheduledChunk& c : out.chunks) {
    SequenceChunk k;
    k.tokens = std::span<const int32_t>(c.seq->tokens).subspan(static_cast<size_t>(c.start), c.n_tokens);
    k.start_pos = static_cast<int32_t>(c.start);
    k.block_table = c.seq->blocks.blocks;
    k.logits = c.wants_logits ? LogitsWanted::kLast : LogitsWanted::kNone;
    chunks_.push_back(k);
    if (c.wants_logits) rows.push_back(active_.at(c.seq->id).get());
  }
  Status status = [&]() -> Status {
    KILN_ASSIGN_OR_RETURN(StepInputs in, steps_.Build(chunks_, bm_->block_size()));
    KILN_ASSIGN_OR_RETURN(Tensor logits, model_->Forward(in, kv_->layers()));
    // Plain greedy rows need no logits on the host: take the argmax on the device and copy
    // back one id per row (the host sampler's rule, so outputs are unchanged).
    step_sampling_ = StepSampling::kHost;
    if (in.n_logits > 0 && std::all_of(rows.begin(), rows.end(), [](const RequestState* st) {
          return IsPlainGreedy(st->req.sampling, st->req.return_logprob || st->req.logprobs > 0);
        })) {
      step_sampling_ = StepSampling::kGreedy;
    } else if (in.n_logits > 0 && device_sampling_on_ &&
               std::all_of(rows.begin(), rows.end(),
                           [](const RequestState* st) { return st->req.logprobs <= kMaxDeviceTopLogprobs; })) {
      step_sampling_ = StepSampling::kDevice;
    }
    if (step_sampling_ == StepSampling::kDevice) {
      // The whole chain on the device: only ids (and logprobs when asked) come back.
      device_sampling_.Clear();
      for (const RequestState* st : rows) {
        const Sequence& s = st->seq;
        device_sampling_.AddRow(st->req.sampling, s.prompt(), s.output(), static_cast<uint64_t>(s.generated()),
                                st->req.return_logprob || st->req.logprobs > 0, st->req.logprobs);
      }
      return device_sampling_.Run(logits);
    }
    if (step_sampling_ == StepSampling::kGreedy) {
      Tensor ids(greedy_ids_.get(), DType::kI32, {static_cast<int64_t>(in.n_logits)});
      backend_->ArgmaxRows(ids, logits);
      greedy_host_.resize(static_cast<size_t>(in.n_logits));
      return backend_->CopyToHost(greedy_host_.data(), ids.data, greedy_host_.size() * sizeof(int32_t));
    }
    if (in.n_logits > 0) {
      logits_dtype_ = logits.dtype;
      if (logits.dtype == DType::kF32) {
        logits_.resize(static_cast<size_t>(in.n_logits) * vocab_);
        KILN_RETURN_IF_ERROR(backend_->CopyToHostF32(logits_.data(), logits));
      } else {
        // bf16/f16: copy the raw rows (half the bytes) and convert each row where it is
        // sampled, in parallel, instead of one serial conversion of the whole block.
        raw_logits_.resize(logits.nbytes());
        KILN_RETURN_IF_ERROR(backend_->CopyToHost(raw_logits_.data(), logits.data, logits.nbytes()));
      }
    }
    return Status::Ok();
  }();
  const auto t_forward = Clock::now();
  ++counters_.steps;
  if (!status.ok()) {
    for (const ScheduledChunk& c : out.chunks) {
      auto it = active_.find(c.seq->id);
      if (it != active_.end()) Finish(*it->second, RequestEvent{}, "error", status.message());
    }
    return;
  }
  sched_->Commit(out);
  if (step_sampling_ == StepSampling::kGreedy) {
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r]->next = greedy_host_[r];
      rows[r]->logprob = 0.0f;
      rows[r]->top.clear();
    }
  } else if (step_sampling_ == StepSampling::kDevice) {
    for (size_t r = 0; r < rows.size(); ++r) {
      RequestState& st = *rows[r];
      const int i = static_cast<int>(r);
      st.next = device_sampling_.id(i);
      st.logprob = st.req.return_logprob || st.req.logprobs > 0 ? device_sampling_.logprob(i) : 0.0f;
      st.top.clear();
      for (int k = 0; k < st.req.logprobs; ++k)
        st.top.push_back({device_sampling_.top_id(i, k), device_sampling_.top_logprob(i, k)});
    }
  } else {
    SampleRows(rows);
  }
  for (RequestState* st : rows) HandleToken(*st);
  if (step_log_.on()) LogStep(out, t_start, t_scheduled, t_forward);
}

void ExecutorImpl::LogStep(const SchedulerOutput& out, Clock::time_point t_start, Clock::time_point t_scheduled,
                           Clock::time_point t_forward) {
  const auto now = Clock::now();
  auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
  StepRecord r;
  r.n_tokens = out.n_tokens;
  r.n_chunks = static_cast<int>(out.chunks.size());
  for (const ScheduledChunk& c : out.chunks)
    if (c.n_tokens == 1) {
      ++r.n_one_token;
      r.decode_kv += c.start + 1;
    }
  r.n_logits = out.n_logits;
  r.running = sched_->n_running();
  r.waiting = sched_->n_waiting();
  r.kv_blocks_used = bm_->n_used();
  r.schedule_us = us(t_scheduled - t_start);
  r.forward_us = us(t_forward - t_scheduled);
  r.finish_us = us(now - t_forward);
  r.gap_us = last_step_end_ == Clock::time_point{} ? 0.0 : us(t_start - last_step_end_);
  last_step_end_ = now;
  step_log_.Write(r);
}

void ExecutorImpl::SampleRows(const std::vector<RequestState*>& rows) {
  const int n = static_cast<int>(rows.size());
  const size_t V = static_cast<size_t>(vocab_);
#pragma omp parallel for schedule(dynamic) if (n > 1 && static_cast <size_t>(n) * V >= (size_t{1} << 20))
  for (int r = 0; r < n; ++r) {
    RequestState& st = *rows[r];
    thread_local std::vector<float> row;
    std::span<float> logits;
    if (logits_dtype_ == DType::kF32) {
      logits = std::span<float>(logits_.data() + static_cast<size_t>(r) * V, V);
    } else {
      row.resize(V);
      const size_t row_bytes = DTypeBytes(logits_dtype_, static_cast<int64_t>(V));
      Status cs = ConvertElements(raw_logits_.data() + static_cast<size_t>(r) * row_bytes, logits_dtype_,
                                  row.data(), DType::kF32, static_cast<int64_t>(V));
      if (!cs.ok()) std::fill(row.begin(), row.end(), 0.0f);  // unreachable for float dtypes
      logits = std::span<float>(row);
    }
    // Log-probabilities of the raw logits, before penalties and temperature.
    thread_local std::vector<float> lp;
    const bool want_lp = st.req.return_logprob || st.req.logprobs > 0;
    if (want_lp) {
      lp.resize(V);
      LogSoftmax(logits, lp);
    }
    st.top.clear();
    if (st.req.logprobs > 0) {
      thread_local std::vector<int32_t> ids;
      ids.resize(V);
      for (size_t i = 0; i < V; ++i) ids[i] = static_cast<int32_t>(i);
      const size_t k = std::min<size_t>(st.req.logprobs, V);
      std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                        [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
      for (size_t i = 0; i < k; ++i) st.top.push_back({ids[i], lp[ids[i]]});
    }
    const Sequence& s = st.seq;
    st.next = st.sampler->Sample(logits, s.prompt(), s.output(), static_cast<uint64_t>(s.generated()));
    st.logprob = want_lp && st.next >= 0 && static_cast<size_t>(st.next) < V ? lp[st.next] : 0.0f;
  }
}

void ExecutorImpl::HandleToken(RequestState& st) {
  if (!st.got_first) {
    st.got_first = true;
    st.t_first = Clock::now();
  }
  RequestEvent ev;
  ev.logprob = st.logprob;
  ev.top_logprobs = std::move(st.top);
  const int32_t tok = st.next;
  auto flush = [&](std::string* text) {
    if (!st.detok) return;
    st.stops->Feed(st.detok->Flush(), text);
    *text += st.stops->Finish();
  };
  if (std::find(st.stop_ids.begin(), st.stop_ids.end(), tok) != st.stop_ids.end()) {
    // EOS / stop token: not part of the output.
    std::string tail;
    flush(&tail);
    if (st.req.detokenize) ev.text_delta = std::move(tail);
    ev.token = -1;
    Finish(st, std::move(ev), "stop");
    return;
  }
  st.seq.tokens.push_back(tok);
  ++counters_.generated_tokens;
  ev.token = tok;
  std::string delta;
  bool stopped = false;
  if (st.detok) stopped = st.stops->Feed(st.detok->Push(tok), &delta);
  std::string reason;
  if (stopped) {
    reason = "stop";
  } else if (st.seq.generated() >= st.seq.max_new_tokens || st.seq.num_tokens() >= max_seq_len_) {
    reason = "length";
    flush(&delta);
  }
  if (st.req.detokenize) ev.text_delta = std::move(delta);
  if (reason.empty()) {
    Emit(st, ev);
  } else {
    Finish(st, std::move(ev), reason);
  }
}

void ExecutorImpl::PublishMetrics() {
  std::lock_guard<std::mutex> lk(mu_);
  const uint64_t rejected = metrics_.requests_rejected;
  metrics_ = counters_;
  metrics_.requests_rejected = rejected;
  metrics_.running = sched_->n_running();
  metrics_.waiting = sched_->n_waiting();
  metrics_.kv_blocks_total = bm_->n_blocks();
  metrics_.kv_blocks_used = bm_->n_used();
  metrics_.kv_blocks_free = bm_->n_free();
  metrics_.prefix_cache_hits = sched_->prefix_hits();
  metrics_.prefix_cache_queries = sched_->prefix_queries();
}

}  // namespace

Expected<std::unique_ptr<Executor>> Executor::Create(const std::string& engine_dir,
                                                     const ExecutorOptions& options) {
  auto impl = std::make_unique<ExecutorImpl>(options);
  KILN_RETURN_IF_ERROR(impl->Init(engine_dir).With(engine_dir));
  return std::unique_ptr<Executor>(std::move(impl));
}

}  // namespace kiln
