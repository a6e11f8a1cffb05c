// kiln serve: the OpenAI-compatible HTTP server (src/server) over an in-flight batching Executor.
// SIGTERM/SIGINT drain: new requests get 503, running ones finish, then the server stops;
// a second signal cancels what is left.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "command.h"
#include "engine_flags.h"
#include "kiln/executor.h"
#include "server/server.h"
#include "server/server_log.h"

namespace kiln::cli {
namespace {

struct ServeArgs {
  std::string engine_dir;
  ExecutorOptions exec;
  server::ServerOptions server;
  std::string log_level = "info";
  int64_t drain_timeout_s = 600;
};

void Serve(ServeArgs a) {
  auto level = server::ParseLogLevel(a.log_level);
  if (!level.ok()) Fail(level.status());
  server::SetLogLevel(*level);
  if (a.server.served_model_name.empty()) {
    std::filesystem::path p(a.engine_dir);
    a.server.served_model_name = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  }
  // Signals are taken by one thread (sigwait): block them before any other thread exists.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto executor = ValueOrFail(Executor::Create(a.engine_dir, a.exec));
  auto srv = ValueOrFail(server::HttpServer::Create(*executor, a.server));
  CheckOk(srv->Bind());
  const MemoryPlan plan = executor->memory_plan();
  server::Log(server::LogLevel::kInfo, "engine " + a.engine_dir + " on " + executor->device_name() +
                                           ": max_seq_len " + std::to_string(executor->max_seq_len()) + ", " +
                                           std::to_string(plan.kv_blocks) + " KV blocks of " +
                                           std::to_string(plan.block_size) + " tokens");
  // Tests and scripts read the port from this line (with --port 0).
  std::fprintf(stderr, "kiln serve: listening on http://%s:%d (model '%s')\n", a.server.host.c_str(),
               srv->port(), a.server.served_model_name.c_str());
  std::fflush(stderr);

  std::thread signals([&, set] {
    int sig = 0;
    sigwait(&set, &sig);
    server::Log(server::LogLevel::kInfo, std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                                             ": draining (a second signal cancels running requests)");
    srv->BeginDrain();
    std::thread second([&, set] {
      int s2 = 0;
      sigwait(&set, &s2);
      server::Log(server::LogLevel::kWarn, "second signal: cancelling running requests");
      executor->Shutdown(/*drain=*/false);
    });
    second.detach();
    executor->Shutdown(/*drain=*/true);
    // The executor is done; let the HTTP threads write out the last events.
    if (!srv->WaitIdle(std::chrono::seconds(a.drain_timeout_s)))
      server::Log(server::LogLevel::kWarn, "drain timed out; stopping with requests in flight");
    srv->Stop();
  });
  Status st = srv->Serve();
  if (!st.ok()) {
    server::Log(server::LogLevel::kError, st.message());
    std::_Exit(1);
  }
  signals.join();
  server::Log(server::LogLevel::kInfo, "server stopped");
  std::fflush(stderr);
  // Skip static destructors: detached threads (the second-signal waiter) may still exist.
  std::_Exit(0);
}

void SetupServe(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (completions, chat, metrics)");
  auto a = std::make_shared<ServeArgs>();
  ExecutorOptions& e = a->exec;
  server::ServerOptions& s = a->server;
  cmd->add_option("--engine", a->engine_dir, "engine directory (from kiln build)")->required();
  cmd->add_option("--host", s.host, "address to listen on");
  cmd->add_option("--port", s.port, "port (0 = any free port, printed on start)");
  cmd->add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--served-model-name", s.served_model_name,
                  "model name in the API (default: engine folder name)");
  e.max_queue_size = 1024;  // a server bounds its queue: 429 beyond
  AddExecutorFlags(cmd, &e);
  cmd->add_option("--max-concurrent-requests", s.max_concurrent_requests,
                  "HTTP generation requests in flight; beyond: 503");
  cmd->add_option("--max-body-bytes", s.max_body_bytes, "largest request body; beyond: 413");
  cmd->add_option("--max-prompt-tokens", s.max_prompt_tokens,
                  "longest prompt (0 = max_seq_len - 1); beyond: 413");
  cmd->add_option("--max-n", s.max_n, "largest n (choices per request)");
  cmd->add_option("--drain-timeout", a->drain_timeout_s, "seconds to wait for running requests on SIGTERM");
  cmd->add_option("--log-level", a->log_level, "debug, info, warning, error or off");
  cmd->callback([a]() { Serve(*a); });
}

KILN_REGISTER_COMMAND(SetupServe);

}  // namespace
}  // namespace kiln::cli
