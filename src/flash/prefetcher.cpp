#include "flash/prefetcher.h"

#include <chrono>

#include "base/error.h"

namespace orchard {

Prefetcher::Prefetcher() : thread_([this] { run(); }) {}

Prefetcher::~Prefetcher() {
  {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !busy_; });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Prefetcher::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (busy_) fail("prefetcher: a job is already in flight");
    job_ = std::move(job);
    busy_ = true;
    error_ = nullptr;
  }
  cv_.notify_all();
}

double Prefetcher::wait() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return !busy_; });
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return waited;
}


void Prefetcher::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || (busy_ && job_); });
    if (stop_) return;
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    error_ = error;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace orchard
