// OpenAI request parsing and validation: JSON body -> executor Requests, or an API error.
// Nothing here talks to the network; every rejection names the field at fault.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "kiln/executor.h"

namespace kiln::server {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
  ApiError(int status = 400, std::string msg = "", std::string type_ = "invalid_request_error",
           std::string param_ = "", std::string code_ = "", int retry_after = 0)
      : http_status(status),
        message(std::move(msg)),
        type(std::move(type_)),
        param(std::move(param_)),
        code(std::move(code_)),
        retry_after_s(retry_after) {}
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;      // the field at fault (empty = null)
  std::string code;       // e.g. "model_not_found", "context_length_exceeded" (empty = null)
  int retry_after_s = 0;  // > 0: send Retry-After
};
std::string ErrorBody(const ApiError& e);

enum class Endpoint { kCompletions, kChat };

// One prompt after tokenization (completions may carry several; chat always one).
struct Prompt {
  std::vector<int32_t> ids;
  std::string text;  // for echo (completions); empty when given as token ids
};

// A validated request: the executor Request shared by every choice plus the response shape.
struct GenerationSpec {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::vector<Prompt> prompts;
  Request base;  // prompt left empty; filled per choice
  int n = 1;     // choices per prompt
  bool seed_given = false;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;      // completions: prepend the prompt text
  bool logprobs = false;  // report logprobs at all
  int top_logprobs = 0;   // alternatives per token
  int choices() const { return static_cast<int>(prompts.size()) * n; }
};

struct ProtocolLimits {
  std::string served_model_name;
  int64_t max_seq_len = 0;        // prompt + output
  int64_t max_prompt_tokens = 0;  // longer prompts: 413
  int max_n = 16;
  int max_logprobs = 20;
  int max_prompts = 64;  // prompts in one completions batch
  int max_stop = 16;
};

// The tokenizer side of parsing (the executor in the server; a fake in tests).
class TokenizerAccess {
 public:
  virtual ~TokenizerAccess() = default;
  virtual Expected<std::vector<int32_t>> Encode(const std::string& text) const = 0;  // with BOS
  virtual Expected<std::string> ApplyChatTemplate(const std::string& messages_json) const = 0;
  virtual int64_t vocab_size() const = 0;
};

std::variant<GenerationSpec, ApiError> ParseGenerationRequest(Endpoint endpoint, const std::string& body,
                                                              const ProtocolLimits& limits,
                                                              const TokenizerAccess& tok);

}  // namespace kiln::server
