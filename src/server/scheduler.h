// Continuous batching: requests wait in a queue, join the running batch when a slot frees up,
// and leave it when they finish; every step decodes one token for every active request.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "model/transformer.h"
#include "runtime/token_stream.h"
#include "server/metrics.h"

namespace orchard::server {

struct JobSummary {
  StopReason stop = StopReason::none;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  std::string error;  // set when the job failed inside the engine
};

struct GenerationJob {
  std::vector<int32_t> prompt;
  StreamOptions options;
  // Called on the scheduler's thread for every token; returning false cancels the job (the
  // client went away).
  std::function<bool(const TokenStep&)> on_step;
  // Asked when the job reaches its slot: true when the client left while the job was queued
  // (the job then ends there, before its prefill).
  std::function<bool()> abandoned;
  // Called once, last.
  std::function<void(const JobSummary&)> on_done;
};

class Scheduler {
 public:
  // n_threads: the forward pass's threads; 0 chooses from the model's size (scheduler.cpp).
  Scheduler(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, int n_slots,
            int64_t n_ctx, KernelChoice kernels, int n_threads, KvCacheType kv_cache, Metrics& metrics);
  ~Scheduler();

  void submit(std::shared_ptr<GenerationJob> job);
  int64_t n_ctx() const { return n_ctx_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int n_lanes() const { return static_cast<int>(lanes_.size()); }

 private:
  struct Slot;
  struct Lane;
  void run(Lane& lane);
  // Under mutex_: moves queued jobs into free slots of any lane; true if it placed any.
  bool place_queued();
  void admit(Slot& slot);
  // Samples the slot's next token; true when the slot goes on to the next decode step.
  bool sample(Slot& slot);
  void decode(Lane& lane, const std::vector<Slot*>& slots);
  void finish(Slot& slot, StopReason reason, const std::string& error = "");

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  int64_t n_ctx_;
  KernelChoice kernels_;
  Metrics& metrics_;
  std::vector<std::unique_ptr<Slot>> slots_;  // every lane's
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<std::shared_ptr<GenerationJob>, std::chrono::steady_clock::time_point>> queue_;
  bool stopping_ = false;
};

}  // namespace orchard::server
