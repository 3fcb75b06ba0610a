// A persistent pool of worker threads: created once per context, reused by every operation, so
// that a decode step (hundreds of small matmuls) pays no thread start-up cost. The calling thread
// is worker 0 and does its share of the work.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
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
  // range per thread, or with pieces_per_thread > 1 each thread's range in pieces of at most
  // 1/pieces_per_thread of it. A thread takes its own pieces from the front, in order, and when
  // they are done takes what is left of the other threads' ranges from the back. So each thread
  // streams its own part of the data in order, as with one range each, but a thread slowed by
  // another process on its core (or by a page fault) does not leave the others waiting:
  // measured, both threads were 7-15% idle in a 512-token prefill with one range each. Pieces
  // shrink as a range runs out (half of what is left, down to one index), so that the threads
  // finish together: with fixed eighths a 1.5B decode's down projection ended on a 12 us piece.
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
    const int64_t largest = std::max<int64_t>(1, n / (int64_t{n_threads_} * pieces_per_thread));
    for (int t = 0; t < n_threads_; ++t) pieces_[t].set(n * t / n_threads_, n * (t + 1) / n_threads_);
    run([&](int thread, int n_threads) {
      for (Piece p; (p = pieces_[thread].take(true, largest)).begin >= 0;) fn(p.begin, p.end);
      for (int other = 1; other < n_threads; ++other)
        for (Piece p; (p = pieces_[(thread + other) % n_threads].take(false, largest)).begin >= 0;) fn(p.begin, p.end);
    });
  }

 private:
  using RawFn = void (*)(void* ctx, int thread, int n_threads);
  void run_raw(RawFn fn, void* ctx);
  void worker_loop(int thread);

  struct Piece {
    int64_t begin = -1, end = -1;
  };
  // The indices [front, back) of one thread's range not yet taken, in one word so that the owner
  // (from the front) and the others (from the back) never take the same one.
  struct alignas(64) Pieces {
    std::atomic<uint64_t> range{0};
    void set(int64_t front, int64_t back) {
      range.store(static_cast<uint64_t>(front) | static_cast<uint64_t>(back) << 32, std::memory_order_relaxed);
    }
    // Half of what is left, at most `largest` and at least one index; begin -1 when none is left.
    Piece take(bool from_front, int64_t largest) {
      uint64_t seen = range.load(std::memory_order_relaxed);
      for (;;) {
        const int64_t front = static_cast<int64_t>(seen & 0xffffffffu), back = static_cast<int64_t>(seen >> 32);
        if (front >= back) return {};
        const int64_t size = std::clamp<int64_t>((back - front) / 2, 1, largest);
        const Piece p = from_front ? Piece{front, front + size} : Piece{back - size, back};
        const uint64_t next = from_front ? static_cast<uint64_t>(p.end) | static_cast<uint64_t>(back) << 32
                                         : static_cast<uint64_t>(front) | static_cast<uint64_t>(p.begin) << 32;
        if (range.compare_exchange_weak(seen, next, std::memory_order_relaxed)) return p;
      }
    }
  };

  int n_threads_;
  std::unique_ptr<Pieces[]> pieces_;
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
