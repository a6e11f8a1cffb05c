#include "server/generation.h"

#include <httplib.h>

#include <chrono>
#include <random>

#include "server/json_util.h"
#include "server/server_log.h"

namespace kiln::server {
namespace {

std::string NewId(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%s-%016llx", prefix, static_cast<unsigned long long>(rng()));
  return buf;
}

uint64_t RandomSeed() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

}  // namespace

void SetError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  res.set_content(ErrorBody(e), "application/json");
  ThreadAccessInfo().error = e.message;
}

int GenerationRun::prompt_tokens() const {
  int n = 0;
  for (const Prompt& p : spec.prompts) n += static_cast<int>(p.ids.size());
  return n;
}

int GenerationRun::completion_tokens() const {
  int n = 0;
  for (const ChoiceResult& r : results) n += static_cast<int>(r.tokens.size());
  return n;
}

bool GenerationRun::all_finished() const {
  for (const ChoiceResult& r : results)
    if (r.finish_reason.empty()) return false;
  return true;
}

std::string GenerationRun::finish_summary() const { return results.empty() ? "" : results[0].finish_reason; }

void GenerationRun::Apply(ServerContext& ctx, const ChoiceEvent& ce) {
  ChoiceResult& r = results[ce.choice];
  const bool had_token = !r.tokens.empty();
  Accumulate(r, ce.event, spec.logprobs, ctx.token_texts);
  if (!had_token && !r.tokens.empty()) {
    r.first_token_seen = true;
    r.stats.ttft_ms = std::chrono::duration<double, std::milli>(ce.at - arrival).count();
  }
  if (ce.event.finished) {
    RequestTiming t;
    // TTFT from our own clock (arrival at the server), not the executor's enqueue time.
    double ttft_ms = -1;
    if (r.first_token_seen) ttft_ms = r.stats.ttft_ms;
    r.stats = ce.event.stats;
    if (r.first_token_seen) r.stats.ttft_ms = ttft_ms;
    t.ttft_s = ttft_ms < 0 ? -1 : ttft_ms / 1000.0;
    t.e2e_s = std::chrono::duration<double>(ce.at - arrival).count();
    t.prompt_tokens = static_cast<int>(spec.prompts[ce.choice / spec.n].ids.size());
    t.generated_tokens = static_cast<int>(r.tokens.size());
    t.finish_reason = r.finish_reason;
    ctx.metrics.ObserveRequest(t);
    if (r.finish_reason == "error") Log(LogLevel::kError, id + ": generation failed: " + r.error);
  }
}

void HandleGeneration(ServerContext& ctx, Endpoint endpoint, const httplib::Request& req,
                      httplib::Response& res) {
  auto run = std::make_shared<GenerationRun>();
  run->arrival = std::chrono::steady_clock::now();
  const bool chat = endpoint == Endpoint::kChat;
  run->id = NewId(chat ? "chatcmpl" : "cmpl");
  run->created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  AccessInfo& info = ThreadAccessInfo();
  info.request_id = run->id;
  res.set_header("X-Request-Id", run->id);

  if (ctx.draining) {
    SetError(res, {503, "the server is shutting down", "server_unavailable_error", "", "",
                   ctx.options.retry_after_s});
    return;
  }
  auto parsed = ParseGenerationRequest(endpoint, req.body, ctx.limits, ctx.tokenizer);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    SetError(res, *err);
    return;
  }
  run->spec = std::move(std::get<GenerationSpec>(parsed));
  const GenerationSpec& spec = run->spec;
  info.choices = spec.choices();
  info.stream = spec.stream;
  info.prompt_tokens = run->prompt_tokens();
  if (!ctx.TryAdmit()) {
    SetError(res, {503,
                   "the server is at its limit of " + std::to_string(ctx.options.max_concurrent_requests) +
                       " requests in flight; retry later",
                   "server_busy_error", "", "too_many_requests", ctx.options.retry_after_s});
    return;
  }
  run->slot = std::make_unique<InflightSlot>(ctx);
  run->results.resize(spec.choices());
  run->logprobs_sent.assign(spec.choices(), 0);
  run->text_sent.assign(spec.choices(), 0);
  run->job = std::make_unique<GenerationJob>(ctx.executor);
  if (auto err = run->job->Start(spec, RandomSeed())) {
    if (err->http_status == 429) err->retry_after_s = ctx.options.retry_after_s;
    SetError(res, *err);
    return;
  }

  if (spec.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&ctx, run](size_t, httplib::DataSink& sink) {
          bool ok = StreamGeneration(
              ctx, *run, [&sink](const std::string& s) { return sink.write(s.data(), s.size()); });
          if (ok) sink.done();
          return ok;
        },
        [run](bool success) {
          if (!success && run->job) run->job->CancelAll();  // e.g. the connection broke mid-stream
        });
    return;
  }

  std::vector<ChoiceEvent> events;
  bool done = false;
  while (!done) {
    events.clear();
    done = run->job->Wait(events, std::chrono::milliseconds(500));
    for (const ChoiceEvent& ce : events) run->Apply(ctx, ce);
  }
  for (const ChoiceResult& r : run->results) {
    if (r.finish_reason == "error") {
      SetError(res, {500, "generation failed: " + r.error, "server_error"});
      return;
    }
  }
  info.completion_tokens = run->completion_tokens();
  info.finish_reason = run->finish_summary();
  res.set_content(Dump(FullResponse(spec, run->id, run->created, run->results, run->prompt_tokens(),
                                    run->completion_tokens())),
                  "application/json");
}

}  // namespace kiln::server
