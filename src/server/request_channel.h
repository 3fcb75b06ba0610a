// Hands tokens from the scheduler's thread to the HTTP thread that answers the request.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "runtime/token_stream.h"
#include "server/scheduler.h"

namespace orchard::server {

class RequestChannel {
 public:
  // Scheduler side: false once the client has gone (cancels generation).
  bool push(const TokenStep& step) {
    std::lock_guard<std::mutex> lock(mutex_);
    steps_.push_back(step);
    ready_.notify_one();
    return !cancelled_;
  }
  void close(const JobSummary& summary) {
    std::lock_guard<std::mutex> lock(mutex_);
    summary_ = summary;
    ready_.notify_one();
  }
  // HTTP side.
  void cancel() {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  // Waits for the next step; nullopt once the job is over and every step was taken.
  std::optional<TokenStep> next() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return !steps_.empty() || summary_.has_value(); });
    if (steps_.empty()) return std::nullopt;
    TokenStep step = std::move(steps_.front());
    steps_.pop_front();
    return step;
  }
  // Valid after next() returned nullopt.
  JobSummary summary() {
    std::lock_guard<std::mutex> lock(mutex_);
    return summary_.value_or(JobSummary{});
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<TokenStep> steps_;
  std::optional<JobSummary> summary_;
  bool cancelled_ = false;
};

}  // namespace orchard::server
