// Server-sent events for streamed completions: `data: {chunk}` per delta, an optional usage
// chunk, then `data: [DONE]`. A comment line goes out after a silence so that a client that has
// gone away is noticed (the write fails) and its request cancelled even while it waits in queue.
#include <nlohmann/json.hpp>

#include "server/generation.h"
#include "server/json_util.h"
#include "server/server_log.h"

namespace kiln::server {
namespace {

std::string Event(const nlohmann::json& j) { return "data: " + Dump(j) + "\n\n"; }

}  // namespace

bool StreamGeneration(ServerContext& ctx, GenerationRun& run,
                      const std::function<bool(const std::string&)>& write) {
  const GenerationSpec& spec = run.spec;
  const bool chat = spec.endpoint == Endpoint::kChat;
  auto gone = [&] {
    run.job->CancelAll();
    Log(LogLevel::kInfo, "client of " + run.id + " disconnected; request cancelled");
    // Collect the final "cancelled" events (bounded) so that the metrics count them.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::vector<ChoiceEvent> rest;
    bool finished = false;
    while (!finished && std::chrono::steady_clock::now() < deadline)
      finished = run.job->Wait(rest, std::chrono::milliseconds(100));
    for (const ChoiceEvent& ce : rest) run.Apply(ctx, ce);
    ThreadAccessInfo().finish_reason = "client_disconnected";
    ThreadAccessInfo().completion_tokens = run.completion_tokens();
    return false;
  };
  if (chat) {
    for (int c = 0; c < spec.choices(); ++c)
      if (!write(Event(StreamChunk(spec, run.id, run.created, c, "", nullptr, 0, nullptr, true))))
        return gone();
  }
  std::vector<ChoiceEvent> events;
  auto last_write = std::chrono::steady_clock::now();
  const auto heartbeat = std::chrono::milliseconds(ctx.options.heartbeat_ms);
  bool done = false;
  while (!done) {
    events.clear();
    done = run.job->Wait(events, std::chrono::milliseconds(100));
    for (const ChoiceEvent& ce : events) {
      run.Apply(ctx, ce);
      const ChoiceResult& r = run.results[ce.choice];
      const RequestEvent& ev = ce.event;
      const bool new_logprobs = spec.logprobs && r.logprobs.size() > run.logprobs_sent[ce.choice];
      // Every token gets a chunk, even one whose text is still held back (an incomplete UTF-8
      // character, an engine without a tokenizer): clients can count tokens and time them.
      if (ev.text_delta.empty() && !new_logprobs && !ev.finished && ev.token < 0) continue;
      std::vector<LogprobEntry> lps;
      if (new_logprobs)
        lps.assign(r.logprobs.begin() + static_cast<std::ptrdiff_t>(run.logprobs_sent[ce.choice]),
                   r.logprobs.end());
      run.logprobs_sent[ce.choice] = r.logprobs.size();
      const std::string* finish = ev.finished ? &r.finish_reason : nullptr;
      const size_t offset = run.text_sent[ce.choice];
      run.text_sent[ce.choice] += ev.text_delta.size();
      if (!write(Event(StreamChunk(spec, run.id, run.created, ce.choice, ev.text_delta,
                                   new_logprobs ? &lps : nullptr, offset, finish, false))))
        return gone();
      last_write = std::chrono::steady_clock::now();
    }
    if (!done && std::chrono::steady_clock::now() - last_write >= heartbeat) {
      if (!write(": keep-alive\n\n")) return gone();
      last_write = std::chrono::steady_clock::now();
    }
  }
  if (spec.include_usage &&
      !write(Event(UsageChunk(spec, run.id, run.created, run.prompt_tokens(), run.completion_tokens()))))
    return gone();
  AccessInfo& info = ThreadAccessInfo();
  info.prompt_tokens = run.prompt_tokens();
  info.completion_tokens = run.completion_tokens();
  info.finish_reason = run.finish_summary();
  // Counted before [DONE] so that a client which saw [DONE] also sees itself in /metrics.
  ctx.metrics.CountHttp(chat ? "/v1/chat/completions" : "/v1/completions", 200);
  info.counted = true;
  return write("data: [DONE]\n\n");
}

}  // namespace kiln::server
