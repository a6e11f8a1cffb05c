// OpenAI response bodies: whole responses, streaming chunks, usage and logprobs objects.
#pragma once
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/executor.h"
#include "server/openai_protocol.h"

namespace kiln::server {

// Token id -> its text on its own (for logprobs), cached: the vocabulary is small and fixed.
class TokenTexts {
 public:
  explicit TokenTexts(const Executor& ex) : ex_(ex) {}
  std::string Get(int32_t id);

 private:
  const Executor& ex_;
  std::mutex mu_;
  std::unordered_map<int32_t, std::string> cache_;
};

struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// Everything one choice produced so far.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<LogprobEntry> logprobs;
  std::string finish_reason;  // empty while running
  std::string error;
  RequestStats stats;
  bool first_token_seen = false;
};

// Appends the event's token/text/logprobs to `r` and returns the logprob entry it added (if any).
void Accumulate(ChoiceResult& r, const RequestEvent& ev, bool want_logprobs, TokenTexts& texts);

// OpenAI finish reasons: the executor's "cancelled"/"error" map to null/"error" style values.
nlohmann::json FinishReason(const std::string& reason);

nlohmann::json Usage(int prompt_tokens, int completion_tokens);
// Completions: {"tokens","token_logprobs","top_logprobs","text_offset"}; chat: {"content":[...]}.
nlohmann::json LogprobsJson(Endpoint endpoint, const std::vector<LogprobEntry>& entries, size_t text_offset);

nlohmann::json FullResponse(const GenerationSpec& spec, const std::string& id, int64_t created,
                            const std::vector<ChoiceResult>& choices, int prompt_tokens,
                            int completion_tokens);
// A streaming chunk for one choice: a text delta (and its logprobs) and/or a finish reason.
nlohmann::json StreamChunk(const GenerationSpec& spec, const std::string& id, int64_t created, int choice,
                           const std::string& delta, const std::vector<LogprobEntry>* logprobs,
                           size_t text_offset, const std::string* finish_reason, bool role_only);
nlohmann::json UsageChunk(const GenerationSpec& spec, const std::string& id, int64_t created,
                          int prompt_tokens, int completion_tokens);

}  // namespace kiln::server
