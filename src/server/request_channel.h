// Hands tokens from the engine's thread to the HTTP thread that answers the request.
#pragma once
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "runtime/token_stream.h"
#include "server/channel_waker.h"
#include "orchard/engine.h"

namespace orchard::server {

class RequestChannel : public Wakeable, public std::enable_shared_from_this<RequestChannel> {
 public:
  using Clock = std::chrono::steady_clock;

  // Tokens pushed while the HTTP thread sleeps are announced through `waker`. A stream's takes
  // come at least `write_interval` apart (the first at once).
  explicit RequestChannel(ChannelWaker& waker, Clock::duration write_interval = {})
      : waker_(waker), write_interval_(write_interval) {}

  // Engine side: false once the client has gone (cancels generation).
  bool push(const TokenStep& step) {
    bool cancelled, sleeping;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      steps_.push_back(step);
      cancelled = cancelled_;
      sleeping = waiting_ && !wake_requested_;
      wake_requested_ = wake_requested_ || sleeping;
    }
    // An HTTP thread still busy with earlier steps takes this one without being woken.
    if (sleeping) waker_.request(shared_from_this());
    return !cancelled;
  }
  // The waker's side. Notified after unlocking: the woken thread would otherwise block at once
  // on the mutex held here.
  void wake() override { ready_.notify_one(); }
  void close(const JobSummary& summary) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      summary_ = summary;
    }
    ready_.notify_one();
  }
  // Whether the client has gone (asked when a queued job reaches its slot).
  bool cancelled() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }
  // HTTP side.
  void cancel() {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  // Waits for steps and moves every one waiting into `out` (replacing its contents), so that an
  // HTTP thread that fell behind catches up with one write; false once the job is over and
  // every step was taken. Steps that come within the write interval of the last take wait for
  // its end (the job's end does not): a stream writes at most once per interval however fast
  // the model is, and the engine asks no wake-up for them. While no step comes (the job is
  // queued, or prefills a long prompt), `client_present` is asked every `kPresenceCheck`; when
  // it says no, the job is cancelled and the wait goes on for its end.
  static constexpr Clock::duration kPresenceCheck = std::chrono::milliseconds(100);
  bool take(std::vector<TokenStep>& out, const std::function<bool()>& client_present = {}) {
    out.clear();
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_until(lock, next_take_, [&] { return summary_.has_value(); });
    wait_for_news(lock, client_present);
    if (steps_.empty()) return false;
    out.swap(steps_);
    next_take_ = Clock::now() + write_interval_;
    return true;
  }
  // Waits for the job's first step or its end (a job refused at admission ends with no step).
  void wait_started() {
    std::unique_lock<std::mutex> lock(mutex_);
    wait_for_news(lock, {});
  }
  // Waits up to `timeout` for the job's end; once it has ended, moves every step into `out` and
  // returns true (a response that is not streamed).
  bool take_all(std::vector<TokenStep>& out, Clock::duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return summary_.has_value(); })) return false;
    out.swap(steps_);
    steps_.clear();
    return true;
  }
  // Valid after take() returned false or take_all() returned true.
  JobSummary summary() {
    std::lock_guard<std::mutex> lock(mutex_);
    return summary_.value_or(JobSummary{});
  }

 private:
  // Sleeps (announced to push(), which then asks the waker) until a step is waiting or the job
  // is over, asking `client_present`, when given, every kPresenceCheck.
  void wait_for_news(std::unique_lock<std::mutex>& lock, const std::function<bool()>& client_present) {
    waiting_ = true;
    auto news = [&] { return !steps_.empty() || summary_.has_value(); };
    if (!client_present) ready_.wait(lock, news);
    while (!ready_.wait_for(lock, kPresenceCheck, news)) {
      if (cancelled_) continue;
      lock.unlock();
      const bool present = client_present();
      lock.lock();
      cancelled_ = cancelled_ || !present;
    }
    waiting_ = wake_requested_ = false;
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<TokenStep> steps_;
  std::optional<JobSummary> summary_;
  ChannelWaker& waker_;
  const Clock::duration write_interval_;
  Clock::time_point next_take_{};
  bool waiting_ = false;         // the HTTP thread sleeps in take()
  bool wake_requested_ = false;  // and the waker was asked to wake it
  bool cancelled_ = false;
};

}  // namespace orchard::server
