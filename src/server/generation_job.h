// One HTTP request's generation: every choice enqueued on the executor, events collected from
// the step-loop thread (callbacks only append and notify: they never block) and handed to the
// HTTP thread that waits on them.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "kiln/executor.h"
#include "server/openai_protocol.h"

namespace kiln::server {

struct ChoiceEvent {
  int choice = 0;
  RequestEvent event;
  std::chrono::steady_clock::time_point at;
};

class GenerationJob {
 public:
  explicit GenerationJob(Executor& executor) : executor_(executor), state_(std::make_shared<State>()) {}
  ~GenerationJob();  // cancels whatever is still running
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  // Enqueues spec.choices() requests (choice i = prompt i / n, sample i % n). On a failure the
  // ones already queued are cancelled and the error comes back (queue full -> 429).
  std::optional<ApiError> Start(const GenerationSpec& spec, uint64_t random_seed);
  // Waits up to `timeout` for events, appends them to `out`; true once every choice finished
  // and all events were handed out.
  bool Wait(std::vector<ChoiceEvent>& out, std::chrono::milliseconds timeout);
  void CancelAll();
  const std::vector<int>& prompt_lengths() const { return prompt_lengths_; }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<ChoiceEvent> events;
    int unfinished = 0;
  };
  Executor& executor_;
  std::shared_ptr<State> state_;
  std::vector<uint64_t> ids_;
  std::vector<int> prompt_lengths_;  // per choice
  bool done_ = false;
};

}  // namespace kiln::server
