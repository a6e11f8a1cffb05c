// Server metrics in the Prometheus text format (version 0.0.4): HTTP requests by status,
// tokens, TTFT/TPOT/end-to-end latency histograms, plus the executor's gauges and counters.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/executor.h"

namespace kiln::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double v);
  // Appends "# TYPE name histogram" and the _bucket/_sum/_count lines.
  void Render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Latencies of one finished executor request (one choice), in seconds.
struct RequestTiming {
  double ttft_s = -1;  // < 0: no token came
  double e2e_s = 0;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  std::string finish_reason;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void CountHttp(const std::string& endpoint, int status);
  void ObserveRequest(const RequestTiming& t);
  std::string Render(const ExecutorMetrics& ex, const std::string& model) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> http_;  // (endpoint, status) -> count
  std::map<std::string, uint64_t> finished_;              // finish reason -> count
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, tpot_, e2e_, prompt_len_, gen_len_;
};

}  // namespace kiln::server
