#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace kiln::server {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

void Line(std::string& out, const std::string& name, const std::string& labels, double v) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " " + Num(v) + "\n";
}

void Header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();  // le semantics
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string& out) const {
  Header(out, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    Line(out, name + "_bucket", "le=\"" + Num(bounds_[i]) + "\"", static_cast<double>(cum));
  }
  Line(out, name + "_bucket", "le=\"+Inf\"", static_cast<double>(count_));
  Line(out, name + "_sum", "", sum_);
  Line(out, name + "_count", "", static_cast<double>(count_));
}

ServerMetrics::ServerMetrics()
    : ttft_(
          {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
             0.075, 0.1,    0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1,    2.5}),
      e2e_({0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 300}),
      prompt_len_({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}),
      gen_len_({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}) {}

void ServerMetrics::CountHttp(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++http_[{endpoint, status}];
}

void ServerMetrics::ObserveRequest(const RequestTiming& t) {
  std::lock_guard lock(mu_);
  ++finished_[t.finish_reason];
  prompt_tokens_ += t.prompt_tokens;
  generation_tokens_ += t.generated_tokens;
  if (t.ttft_s >= 0) ttft_.Observe(t.ttft_s);
  if (t.ttft_s >= 0 && t.generated_tokens > 1) tpot_.Observe((t.e2e_s - t.ttft_s) / (t.generated_tokens - 1));
  e2e_.Observe(t.e2e_s);
  prompt_len_.Observe(t.prompt_tokens);
  gen_len_.Observe(t.generated_tokens);
}

std::string ServerMetrics::Render(const ExecutorMetrics& ex, const std::string& model) const {
  std::lock_guard lock(mu_);
  std::string out;
  std::string escaped;
  for (char c : model) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  const std::string m = "model_name=\"" + escaped + "\"";
  Header(out, "kiln_http_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (const auto& [key, n] : http_)
    Line(out, "kiln_http_requests_total",
         "endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"",
         static_cast<double>(n));
  Header(out, "kiln_request_success_total", "counter",
         "Generation requests (choices) finished, by finish reason.");
  for (const auto& [reason, n] : finished_)
    Line(out, "kiln_request_success_total", m + ",finished_reason=\"" + reason + "\"",
         static_cast<double>(n));
  Header(out, "kiln_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  Line(out, "kiln_prompt_tokens_total", m, static_cast<double>(prompt_tokens_));
  Header(out, "kiln_generation_tokens_total", "counter", "Generated tokens of finished requests.");
  Line(out, "kiln_generation_tokens_total", m, static_cast<double>(generation_tokens_));
  ttft_.Render("kiln_time_to_first_token_seconds", "Time from arrival to the first generated token.", out);
  tpot_.Render("kiln_time_per_output_token_seconds", "Mean time between generated tokens of a request.", out);
  e2e_.Render("kiln_e2e_request_latency_seconds", "Time from arrival to the last token.", out);
  prompt_len_.Render("kiln_request_prompt_tokens", "Prompt length of finished requests.", out);
  gen_len_.Render("kiln_request_generation_tokens", "Generated tokens of finished requests.", out);

  auto gauge = [&](const char* name, const char* help, double v) {
    Header(out, name, "gauge", help);
    Line(out, name, m, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    Header(out, name, "counter", help);
    Line(out, name, m, v);
  };
  gauge("kiln_num_requests_running", "Requests in the running batch.", ex.running);
  gauge("kiln_num_requests_waiting", "Requests waiting to be scheduled.", ex.waiting);
  gauge("kiln_kv_blocks_total", "KV-cache blocks.", static_cast<double>(ex.kv_blocks_total));
  gauge("kiln_kv_blocks_used", "KV-cache blocks in use.", static_cast<double>(ex.kv_blocks_used));
  gauge("kiln_kv_blocks_free", "KV-cache blocks free.", static_cast<double>(ex.kv_blocks_free));
  gauge("kiln_kv_cache_usage_perc", "Fraction of KV-cache blocks in use.",
        ex.kv_blocks_total > 0 ? static_cast<double>(ex.kv_blocks_used) / ex.kv_blocks_total : 0.0);
  counter("kiln_prefix_cache_hits_total", "Prefix-cache block hits.",
          static_cast<double>(ex.prefix_cache_hits));
  counter("kiln_prefix_cache_queries_total", "Prefix-cache block lookups.",
          static_cast<double>(ex.prefix_cache_queries));
  counter("kiln_executor_requests_finished_total", "Executor requests finished.",
          static_cast<double>(ex.requests_finished));
  counter("kiln_executor_requests_cancelled_total", "Executor requests cancelled.",
          static_cast<double>(ex.requests_cancelled));
  counter("kiln_executor_requests_failed_total", "Executor requests failed.",
          static_cast<double>(ex.requests_failed));
  counter("kiln_executor_requests_rejected_total", "Executor requests rejected (queue full).",
          static_cast<double>(ex.requests_rejected));
  counter("kiln_executor_prompt_tokens_total", "Prompt tokens seen by the executor.",
          static_cast<double>(ex.prompt_tokens));
  counter("kiln_executor_generation_tokens_total", "Tokens generated by the executor.",
          static_cast<double>(ex.generated_tokens));
  counter("kiln_executor_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.",
          static_cast<double>(ex.cached_prompt_tokens));
  counter("kiln_num_preemptions_total", "Sequences preempted.", static_cast<double>(ex.preemptions));
  counter("kiln_executor_steps_total", "Executor steps.", static_cast<double>(ex.steps));
  return out;
}

}  // namespace kiln::server
