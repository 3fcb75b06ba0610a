// One background I/O thread that runs a job (reading the next stream unit) while the caller
// computes, and reports how long the caller then had to wait for it.
#pragma once
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace orchard {

class Prefetcher {
 public:
  Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher();  // waits for the job in flight

  // Starts `job` on the I/O thread. At most one job at a time: wait() for the previous one first.
  void submit(std::function<void()> job);
  // Blocks until the submitted job (if any) is done; returns the seconds spent blocked and
  // rethrows the job's exception, if it threw.
  double wait();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace orchard
