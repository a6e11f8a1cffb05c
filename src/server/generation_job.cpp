#include "server/generation_job.h"

namespace kiln::server {

GenerationJob::~GenerationJob() {
  if (!done_) CancelAll();
}

std::optional<ApiError> GenerationJob::Start(const GenerationSpec& spec, uint64_t random_seed) {
  const int total = spec.choices();
  {
    std::lock_guard lock(state_->mu);
    state_->unfinished = total;
  }
  for (int c = 0; c < total; ++c) {
    const Prompt& prompt = spec.prompts[c / spec.n];
    Request r = spec.base;
    r.prompt = prompt.ids;
    // n samples of one request differ by seed; a given seed keeps the whole response reproducible.
    r.sampling.seed =
        (spec.seed_given ? spec.base.sampling.seed : random_seed) + static_cast<uint64_t>(c % spec.n);
    prompt_lengths_.push_back(static_cast<int>(prompt.ids.size()));
    std::shared_ptr<State> state = state_;
    auto id = executor_.Enqueue(std::move(r), [state, c](const RequestEvent& ev) {
      ChoiceEvent ce{c, ev, std::chrono::steady_clock::now()};
      {
        std::lock_guard lock(state->mu);
        state->events.push_back(std::move(ce));
        if (ev.finished) --state->unfinished;
      }
      state->cv.notify_all();
    });
    if (!id.ok()) {
      CancelAll();
      // The choices never queued will send no final event.
      {
        std::lock_guard lock(state_->mu);
        state_->unfinished -= total - c;
      }
      const Status& st = id.status();
      if (st.code() == ErrorCode::kOutOfMemory)
        return ApiError{429,
                        "the server is busy (request queue full): " + st.message(),
                        "server_busy_error",
                        "",
                        "queue_full",
                        1};
      if (st.code() == ErrorCode::kInvalidArgument) return ApiError{400, st.message()};
      if (st.code() == ErrorCode::kCancelled)
        return ApiError{503, "the server is shutting down", "server_unavailable_error", "", "", 1};
      return ApiError{500, st.message(), "server_error"};
    }
    ids_.push_back(*id);
  }
  return std::nullopt;
}

bool GenerationJob::Wait(std::vector<ChoiceEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mu);
  state_->cv.wait_for(lock, timeout, [&] { return !state_->events.empty() || state_->unfinished <= 0; });
  while (!state_->events.empty()) {
    out.push_back(std::move(state_->events.front()));
    state_->events.pop_front();
  }
  if (state_->unfinished <= 0) done_ = true;
  return done_;
}

void GenerationJob::CancelAll() {
  for (uint64_t id : ids_) executor_.Cancel(id);
}

}  // namespace kiln::server
