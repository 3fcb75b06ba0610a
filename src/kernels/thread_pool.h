// A persistent pool of worker threads: created once per context, reused by every operation, so
// that a decode step (hundreds of small matmuls) pays no thread start-up cost. The calling thread
// is worker 0 and does its share of the work.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace orchard {

class ThreadPool {
 public:
  // n_threads <= 0: one per online CPU.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread, n_threads) once on every thread (thread 0 is the caller) and returns when
  // all calls have returned. Not reentrant: fn must not call run() again.
  template <typename Fn>
  void run(Fn&& fn) {
    run_raw([](void* ctx, int thread, int n) { (*static_cast<Fn*>(ctx))(thread, n); }, &fn);
  }

  // Splits [0, n) into contiguous ranges and calls fn(begin, end) for each non-empty one: one
  // range per thread, or with pieces_per_thread > 1 that many per thread, which the threads
  // claim in order as they finish the last. Claimed pieces even out the threads when one is
  // slowed (another process on its core, a page fault): long operations such as a prefill's
  // matmuls take them; short ones (a decode step's) keep one range per thread, which streams
  // the weights in two sequential halves.
  template <typename Fn>
  void parallel_for(int64_t n, Fn&& fn, int pieces_per_thread = 1) {
    if (n_threads_ == 1 || n <= 1) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    if (pieces_per_thread <= 1) {
      run([&](int thread, int n_threads) {
        const int64_t begin = n * thread / n_threads, end = n * (thread + 1) / n_threads;
        if (begin < end) fn(begin, end);
      });
      return;
    }
    const int64_t pieces = std::min<int64_t>(n, int64_t{n_threads_} * pieces_per_thread);
    std::atomic<int64_t> next{0};
    run([&](int, int) {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < pieces;) {
        const int64_t begin = n * i / pieces, end = n * (i + 1) / pieces;
        if (begin < end) fn(begin, end);
      }
    });
  }

 private:
  using RawFn = void (*)(void* ctx, int thread, int n_threads);
  void run_raw(RawFn fn, void* ctx);
  void worker_loop(int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  RawFn fn_ = nullptr;
  void* ctx_ = nullptr;
  // A new job is published by bumping `generation_`; workers count themselves out in `pending_`.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

// Number of CPUs this process may run on.
int available_cpus();

}  // namespace orchard
