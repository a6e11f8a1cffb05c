#include "bench_requests.h"

#include <condition_variable>
#include <mutex>

#include "command.h"

namespace kiln::cli {

Request SyntheticRequest(std::mt19937_64& rng, int64_t vocab, int isl, int osl) {
  Request r;
  r.prompt.resize(isl);
  for (auto& t : r.prompt) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  r.max_tokens = osl;
  r.ignore_eos = true;
  r.sampling.temperature = 0.0f;
  r.detokenize = false;
  r.return_logprob = false;
  return r;
}

void Drive(Executor& ex, const std::vector<Request>& reqs, int concurrency, std::vector<Timing>* timings) {
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  timings->assign(reqs.size(), Timing{});
  const int limit = concurrency > 0 ? concurrency : static_cast<int>(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return in_flight < limit; });
      ++in_flight;
      (*timings)[i].enqueued = BenchClock::now();
    }
    auto id = ex.Enqueue(reqs[i], [&, i](const RequestEvent& ev) {
      const auto now = BenchClock::now();
      std::lock_guard<std::mutex> lk(mu);
      Timing& t = (*timings)[i];
      if (ev.token >= 0) {
        if (!t.has_first) {
          t.has_first = true;
          t.first = now;
        }
        ++t.tokens;
      }
      if (ev.finished) {
        t.done = now;
        t.finish_reason = ev.finish_reason;
        t.error = ev.error;
        --in_flight;
        cv.notify_all();
      }
    });
    if (!id.ok()) Fail(id.status());
  }
  ex.WaitAll();
}

}  // namespace kiln::cli
