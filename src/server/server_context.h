// State shared by the server's handlers (internal to src/server).
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>

#include "kiln/executor.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "server/openai_response.h"
#include "server/server.h"

namespace kiln::server {

// Parsing's view of the executor's tokenizer.
class ExecutorTokenizer : public TokenizerAccess {
 public:
  explicit ExecutorTokenizer(const Executor& ex) : ex_(ex) {}
  Expected<std::vector<int32_t>> Encode(const std::string& text) const override;
  Expected<std::string> ApplyChatTemplate(const std::string& messages_json) const override;
  int64_t vocab_size() const override { return ex_.vocab_size(); }

 private:
  const Executor& ex_;
};

// What the access-log line of the request on this thread should carry.
struct AccessInfo {
  std::string request_id;
  int prompt_tokens = 0, completion_tokens = 0, choices = 0;
  std::string finish_reason;
  std::string error;
  bool stream = false;
  bool counted = false;  // HTTP metrics already counted (streams count before [DONE])
};

struct ServerContext {
  ServerContext(Executor& ex, const ServerOptions& opts, ProtocolLimits lim)
      : executor(ex), options(opts), limits(std::move(lim)), tokenizer(ex), token_texts(ex) {}
  Executor& executor;
  ServerOptions options;
  ProtocolLimits limits;
  ExecutorTokenizer tokenizer;
  TokenTexts token_texts;
  ServerMetrics metrics;
  std::atomic<bool> draining{false};

  // Generation requests in flight (admission control and graceful drain).
  std::mutex inflight_mu;
  std::condition_variable inflight_cv;
  int inflight = 0;
  bool TryAdmit();
  void Release();
};

// Holds one admission slot for as long as it lives.
class InflightSlot {
 public:
  explicit InflightSlot(ServerContext& ctx) : ctx_(ctx) {}
  ~InflightSlot() { ctx_.Release(); }
  InflightSlot(const InflightSlot&) = delete;
  InflightSlot& operator=(const InflightSlot&) = delete;

 private:
  ServerContext& ctx_;
};

AccessInfo& ThreadAccessInfo();

}  // namespace kiln::server
