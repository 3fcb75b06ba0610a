// Wakes HTTP threads on behalf of the engine. Waking a sleeping thread is a system call and an OS
// scheduler round trip (several microseconds in the kernel, plus the waker often being preempted
// by the thread it woke); done by the engine's own thread it would cost one per request per
// step, all on the thread that runs every forward pass. Handed to this thread instead, the
// engine pays at most one wake-up per step, and the per-request ones run beside the next
// forward pass.
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace orchard::server {

// What the waker wakes: a thread that waits on it (RequestChannel's HTTP thread).
class Wakeable {
 public:
  virtual ~Wakeable() = default;
  virtual void wake() = 0;
};

class ChannelWaker {
 public:
  ChannelWaker();
  ~ChannelWaker();
  ChannelWaker(const ChannelWaker&) = delete;
  ChannelWaker& operator=(const ChannelWaker&) = delete;

  // Wakes the thread waiting on `channel` soon (the channel stays alive until then).
  void request(std::shared_ptr<Wakeable> channel);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable work_;
  std::vector<std::shared_ptr<Wakeable>> pending_;
  bool sleeping_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace orchard::server
