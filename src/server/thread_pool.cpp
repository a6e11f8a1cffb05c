#include "server/thread_pool.h"

#include <algorithm>

namespace kiln::server {

LifoThreadPool::LifoThreadPool(size_t threads) {
  for (size_t i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) threads_.emplace_back([this, p = w.get()] { Run(p); });
}

LifoThreadPool::~LifoThreadPool() { shutdown(); }

void LifoThreadPool::enqueue(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(fn));
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->woken = true;
    w->cv.notify_one();
  }
}

void LifoThreadPool::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
    for (auto& w : workers_) w->cv.notify_one();
  }
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void LifoThreadPool::Run(Worker* w) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (!jobs_.empty()) {
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;  // destroy captured state outside the lock
      lock.lock();
      continue;
    }
    if (shutdown_) return;
    w->woken = false;
    idle_.push_back(w);
    w->cv.wait(lock, [&] { return w->woken || shutdown_; });
    if (!w->woken) idle_.erase(std::remove(idle_.begin(), idle_.end(), w), idle_.end());
  }
}

}  // namespace kiln::server
