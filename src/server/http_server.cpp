// Routes, authentication, admission, error bodies and the access log of the HTTP server.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "server/generation.h"
#include "server/json_util.h"
#include "server/server.h"
#include "server/server_context.h"
#include "server/server_log.h"
#include "server/thread_pool.h"

namespace kiln::server {

using nlohmann::json;

// ---- ServerContext pieces ----

Expected<std::vector<int32_t>> ExecutorTokenizer::Encode(const std::string& text) const {
  auto ids = ex_.Encode(text, /*add_special=*/true);
  if (!ids.ok()) return ids;
  // A chat template that writes BOS itself would get a second one from add_special.
  std::vector<int32_t>& v = *ids;
  if (v.size() >= 2 && v[0] == ex_.bos_id() && v[1] == ex_.bos_id() && ex_.bos_id() >= 0) v.erase(v.begin());
  return ids;
}

Expected<std::string> ExecutorTokenizer::ApplyChatTemplate(const std::string& messages_json) const {
  auto text = ex_.ApplyChatTemplate(messages_json, /*add_generation_prompt=*/true);
  const ErrorCode code = text.status().code();
  if (text.ok() || (code != ErrorCode::kUnsupported && code != ErrorCode::kNotFound)) return text;
  // An engine without a chat template: each message's content on its own line, as `kiln chat`
  // and kiln.LLM.chat render it.
  std::string plain;
  for (const json& m : json::parse(messages_json)) plain += m.value("content", std::string()) + "\n";
  return plain;
}

bool ServerContext::TryAdmit() {
  std::lock_guard lock(inflight_mu);
  if (inflight >= options.max_concurrent_requests) return false;
  ++inflight;
  return true;
}

void ServerContext::Release() {
  {
    std::lock_guard lock(inflight_mu);
    --inflight;
  }
  inflight_cv.notify_all();
}

AccessInfo& ThreadAccessInfo() {
  static thread_local AccessInfo info;
  return info;
}

// ---- the server ----

namespace {
thread_local std::chrono::steady_clock::time_point t_request_start;
}  // namespace
static void RaiseListenBacklog(int port);

struct HttpServer::Impl {
  Impl(Executor& ex, const ServerOptions& opts, ProtocolLimits limits) : ctx(ex, opts, std::move(limits)) {}
  ServerContext ctx;
  httplib::Server svr;
  int bound_port = -1;

  void Setup();
  void Routes();
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() {
  if (impl_) impl_->svr.stop();
}

Expected<std::unique_ptr<HttpServer>> HttpServer::Create(Executor& executor, const ServerOptions& options) {
  ProtocolLimits limits;
  limits.served_model_name = options.served_model_name;
  limits.max_seq_len = executor.max_seq_len();
  limits.max_prompt_tokens = options.max_prompt_tokens > 0
                                 ? std::min(options.max_prompt_tokens, limits.max_seq_len - 1)
                                 : limits.max_seq_len - 1;
  limits.max_n = options.max_n;
  limits.max_logprobs = options.max_logprobs;
  if (limits.served_model_name.empty()) return InvalidArgument("serve: the served model name is empty");
  if (limits.max_seq_len < 2) return InvalidArgument("serve: the executor's max_seq_len is below 2");
  if (options.max_concurrent_requests < 1) return InvalidArgument("--max-concurrent-requests must be >= 1");
  auto impl = std::make_unique<Impl>(executor, options, std::move(limits));
  impl->Setup();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Impl::Setup() {
  const ServerOptions& o = ctx.options;
  // Streams hold their thread for their whole life: one thread per admitted request, plus spares
  // so that /health, /metrics and rejections still answer when every slot is busy.
  const size_t threads = static_cast<size_t>(o.max_concurrent_requests) + 16;
  svr.new_task_queue = [threads] { return new LifoThreadPool(threads); };
  svr.set_payload_max_length(o.max_body_bytes);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_timeout(5);
  svr.set_keep_alive_max_count(1000);
  // Headers, body and every SSE chunk are separate small writes: without TCP_NODELAY, Nagle
  // holds each one back for the client's delayed ACK (~40 ms a response or token).
  svr.set_tcp_nodelay(true);

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = std::chrono::steady_clock::now();
    ThreadAccessInfo() = AccessInfo{};
    if (!ctx.options.api_key.empty() && req.path.rfind("/v1/", 0) == 0) {
      const std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + ctx.options.api_key) {
        SetError(res, {401, auth.empty() ? "missing API key (Authorization: Bearer ...)" : "invalid API key",
                       "authentication_error", "", "invalid_api_key"});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Every 4xx/5xx without a body (unknown route, body too large, ...) gets an OpenAI error object.
  svr.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.is_chunked_content_provider_)
          return httplib::Server::HandlerResponse::Unhandled;
        ApiError e;
        e.http_status = res.status;
        switch (res.status) {
          case 404:
            e.message = "no route for " + req.method + " " + req.path;
            e.code = "not_found";
            break;
          case 405:
            e.message = "method " + req.method + " not allowed on " + req.path;
            break;
          case 413:
            e.message = "the request body is larger than the server accepts";
            e.code = "request_too_large";
            break;
          case 400:
            e.message = "malformed HTTP request";
            break;
          default:
            e.message = "HTTP " + std::to_string(res.status);
            break;
        }
        if (res.status >= 500) e.type = "server_error";
        res.set_content(ErrorBody(e), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));

  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    Log(LogLevel::kError, "handler threw: " + what);
    SetError(res, {500, "internal error: " + what, "server_error"});
  });

  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    AccessInfo& info = ThreadAccessInfo();
    const bool gen = req.path == "/v1/completions" || req.path == "/v1/chat/completions";
    if (!info.counted)
      ctx.metrics.CountHttp(
          gen || req.path.rfind("/v1/", 0) == 0 || req.path == "/health" || req.path == "/metrics" ? req.path
                                                                                                   : "other",
          res.status);
    info.counted = true;
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_request_start).count();
    json line = {{"remote", req.remote_addr},
                 {"method", req.method},
                 {"path", req.path},
                 {"status", res.status},
                 {"latency_ms", std::round(ms * 1000) / 1000}};
    if (gen) {
      line["request_id"] = info.request_id.empty() ? json() : json(info.request_id);
      line["stream"] = info.stream;
      line["choices"] = info.choices;
      line["prompt_tokens"] = info.prompt_tokens;
      line["completion_tokens"] = info.completion_tokens;
      line["finish_reason"] = info.finish_reason.empty() ? json() : json(info.finish_reason);
    }
    if (!info.error.empty()) line["error"] = info.error;
    if (req.path == "/health" || req.path == "/metrics") {
      if (LogEnabled(LogLevel::kDebug)) AccessLog(line);  // probes would drown the log
    } else {
      AccessLog(line);
    }
  });
  Routes();
}

void HttpServer::Impl::Routes() {
  svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(ctx, Endpoint::kCompletions, req, res);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(ctx, Endpoint::kChat, req, res);
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json model = {{"id", ctx.limits.served_model_name},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "kiln"},
                  {"max_model_len", ctx.limits.max_seq_len}};
    res.set_content(Dump(json{{"object", "list"}, {"data", json::array({model})}}), "application/json");
  });
  svr.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != ctx.limits.served_model_name) {
      SetError(res, {404, "The model '" + std::string(req.matches[1]) + "' does not exist",
                     "invalid_request_error", "model", "model_not_found"});
      return;
    }
    res.set_content(Dump(json{{"id", ctx.limits.served_model_name},
                              {"object", "model"},
                              {"created", 0},
                              {"owned_by", "kiln"},
                              {"max_model_len", ctx.limits.max_seq_len}}),
                    "application/json");
  });
  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (ctx.draining) {
      res.status = 503;
      res.set_content(R"({"status":"draining"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.metrics.Render(ctx.executor.Metrics(), ctx.limits.served_model_name),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
}

Status HttpServer::Bind() {
  Impl& s = *impl_;
  const ServerOptions& o = s.ctx.options;
  if (o.port == 0) {
    s.bound_port = s.svr.bind_to_any_port(o.host);
    if (s.bound_port <= 0) return IoError("serve: cannot bind " + o.host + " to any port");
  } else {
    if (!s.svr.bind_to_port(o.host, o.port))
      return IoError("serve: cannot bind " + o.host + ":" + std::to_string(o.port) +
                     " (in use or not allowed)");
    s.bound_port = o.port;
  }
  RaiseListenBacklog(s.bound_port);
  return Status::Ok();
}

// Debian's httplib listens with a backlog of 5 (compiled in): a burst of new connections (64
// clients at once) overflows the accept queue and some get reset. Linux lets listen() be called
// again on the listening socket to raise it; the socket is found by its port.
static void RaiseListenBacklog(int port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int p = -1;
    if (addr.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (p == port) listen(fd, SOMAXCONN);
  }
}

int HttpServer::port() const { return impl_->bound_port; }

Status HttpServer::Serve() {
  if (impl_->bound_port < 0) KILN_RETURN_IF_ERROR(Bind());
  if (!impl_->svr.listen_after_bind()) return IoError("serve: the listening socket failed");
  return Status::Ok();
}

void HttpServer::BeginDrain() { impl_->ctx.draining = true; }

bool HttpServer::WaitIdle(std::chrono::milliseconds timeout) {
  ServerContext& c = impl_->ctx;
  std::unique_lock lock(c.inflight_mu);
  return c.inflight_cv.wait_for(lock, timeout, [&] { return c.inflight == 0; });
}

void HttpServer::Stop() { impl_->svr.stop(); }

}  // namespace kiln::server
