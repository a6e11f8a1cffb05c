// The HTTP server's worker threads. Unlike httplib's FIFO pool, the most recently idle thread
// takes the next connection, so a server that sees little concurrency keeps using a few warm
// threads and its resident memory stays flat instead of creeping up as every one of hundreds of
// threads gets its stack and malloc caches touched in turn.
#pragma once
#include <httplib.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::server {

class LifoThreadPool : public httplib::TaskQueue {
 public:
  explicit LifoThreadPool(size_t threads);
  ~LifoThreadPool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;  // runs the queued jobs, then joins

 private:
  struct Worker {
    std::condition_variable cv;
    bool woken = false;
  };
  void Run(Worker* w);

  std::mutex mu_;
  std::deque<std::function<void()>> jobs_;
  std::vector<Worker*> idle_;  // a stack: back() is the most recently idle
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  bool shutdown_ = false;
};

}  // namespace kiln::server
