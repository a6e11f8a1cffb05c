// POST /v1/completions and /v1/chat/completions: parse, admit, run on the executor, answer
// with one JSON body or a server-sent-event stream.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/generation_job.h"
#include "server/openai_response.h"
#include "server/server_context.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace kiln::server {

// One generation request in flight, owned by its HTTP handler (or its stream provider).
struct GenerationRun {
  GenerationSpec spec;
  std::unique_ptr<GenerationJob> job;
  std::unique_ptr<InflightSlot> slot;
  std::string id;
  int64_t created = 0;
  std::chrono::steady_clock::time_point arrival;
  std::vector<ChoiceResult> results;
  std::vector<size_t> logprobs_sent;  // per choice: entries already streamed
  std::vector<size_t> text_sent;      // per choice: bytes already streamed (completions text_offset)

  int prompt_tokens() const;
  int completion_tokens() const;
  // Folds an event into its choice; a finished choice is counted in the metrics.
  void Apply(ServerContext& ctx, const ChoiceEvent& ev);
  bool all_finished() const;
  std::string finish_summary() const;  // the first choice's reason, for the access log
};

void HandleGeneration(ServerContext& ctx, Endpoint endpoint, const httplib::Request& req,
                      httplib::Response& res);

// Streams `run` as SSE through `write` (returns false once the client is gone, which cancels the
// run). Returns true when the stream ended with [DONE].
bool StreamGeneration(ServerContext& ctx, GenerationRun& run,
                      const std::function<bool(const std::string&)>& write);

void SetError(httplib::Response& res, const ApiError& e);

}  // namespace kiln::server
