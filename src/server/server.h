// kiln's OpenAI-compatible HTTP server over an Executor.
//
//   auto server = kiln::server::HttpServer::Create(*executor, options).value();
//   server->Bind();             // port 0 = any free port; server->port() tells which
//   server->Serve();            // blocks until Stop()
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "kiln/executor.h"
#include "kiln/status.h"

namespace kiln::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;                // empty = no authentication
  std::string served_model_name;      // default: the engine directory's name
  size_t max_body_bytes = 4u << 20;   // larger bodies: 413
  int64_t max_prompt_tokens = 0;      // 0 = max_seq_len - 1; longer prompts: 413
  int max_concurrent_requests = 256;  // generation requests in flight; more: 503 + Retry-After
  int max_n = 16;
  int max_logprobs = 20;
  int retry_after_s = 1;
  int heartbeat_ms = 1000;  // SSE comment after this much silence (finds gone clients)
};

class HttpServer {
 public:
  static Expected<std::unique_ptr<HttpServer>> Create(Executor& executor, const ServerOptions& options);
  ~HttpServer();

  Status Bind();
  int port() const;
  Status Serve();  // blocks until Stop()
  // New generation requests get 503 and /health says "draining"; running ones go on.
  void BeginDrain();
  // Waits until no generation request is in flight; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::server
