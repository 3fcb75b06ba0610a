#include "server/channel_waker.h"

namespace orchard::server {

ChannelWaker::ChannelWaker() : thread_([this] { run(); }) {}

ChannelWaker::~ChannelWaker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_one();
  thread_.join();
}

void ChannelWaker::request(std::shared_ptr<Wakeable> channel) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(std::move(channel));
    wake = sleeping_;
    sleeping_ = false;  // one wake-up for everything requested until it runs
  }
  if (wake) work_.notify_one();
}

void ChannelWaker::run() {
  std::vector<std::shared_ptr<Wakeable>> batch;
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    if (pending_.empty()) {
      if (stopping_) return;
      sleeping_ = true;
      work_.wait(lock, [&] { return !pending_.empty() || stopping_; });
      sleeping_ = false;
      continue;
    }
    batch.swap(pending_);
    lock.unlock();
    for (const auto& channel : batch) channel->wake();
    batch.clear();  // releases the channels outside the lock
    lock.lock();
  }
}

}  // namespace orchard::server
