#include "server/scheduler.h"

#include <algorithm>

#include "base/error.h"
#include "kernels/thread_pool.h"
#include "model/model_impl.h"

namespace orchard::server {

using Clock = std::chrono::steady_clock;

// How the forward-pass threads are arranged. Below some tens of millions of parameters each
// matrix product of a decode step takes a few microseconds, less than handing half of it to a
// second thread and waiting for that thread costs (measured with bench/load_test.py: 1.4M
// parameters, 16 clients, one lane of two threads gave half the tokens per CPU-second of one
// thread). Such a model runs in lanes instead: each lane a thread with its own share of the
// slots, stepping its own batch. Its weights fit in cache, so reading them once per lane costs
// little, and the lanes never wait for each other. A larger model runs one batch on every
// thread, which reads the weights from memory once per step for all requests.
struct LaneShape {
  int lanes, threads_per_lane;  // threads_per_lane 0: one per available CPU
};

LaneShape lane_shape(const Model& model, int requested_threads, int n_slots) {
  constexpr int64_t kSmallModelParameters = 32'000'000;
  const bool small = model.parameter_count() < kSmallModelParameters && !model.impl().flash;
  if (!small) return {1, requested_threads};
  const int threads = requested_threads > 0 ? requested_threads : available_cpus();
  return {std::clamp(threads, 1, n_slots), 1};
}

// A place in a batch: its own KV cache, which keeps the last request's tokens so that a
// follow-up turn of the same conversation prefills only what is new.
struct Scheduler::Slot {
  int lane = 0;
  int64_t sequence = 0;          // its KV cache in the lane's transformer
  // Guarded by mutex_: a job placed here and not yet taken by the lane, and whether the slot
  // is taken at all (placed or running). The rest belongs to the lane's thread.
  std::shared_ptr<GenerationJob> placed;
  bool occupied = false;
  std::vector<int32_t> cached;  // tokens whose keys and values are in the cache
  int32_t next_token = -1;      // sampled, to be decoded in the next batch
  std::vector<int32_t> prefill;  // prompt tokens still to run (a newly admitted request)
  TokenStep step;                // picked from the lane's logits, not yet handed to the job
  std::shared_ptr<GenerationJob> job;
  std::unique_ptr<TokenStream> stream;
  int64_t logits_row = -1;    // its row of the lane's last pass's logits (of its last evaluated position)
  JobSummary summary;
  Clock::time_point submitted, last_token;
  bool first_token = true;
};

struct Scheduler::Lane {
  std::unique_ptr<Transformer> transformer;  // one KV cache per slot of the lane
  std::vector<Slot*> slots;
  std::vector<float> logits;  // [slots in the last pass, n_vocab]: the next tokens' logits
  std::atomic<int64_t> active{0};
  std::thread thread;
};

Scheduler::Scheduler(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, int n_slots,
                     int64_t n_ctx, KernelChoice kernels, int n_threads, KvCacheType kv_cache, Metrics& metrics)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), n_ctx_(n_ctx), kernels_(kernels), metrics_(metrics) {
  if (n_slots < 1) fail("--parallel must be at least 1");
  if (n_ctx < 0) fail("--ctx-size: a context of ", n_ctx, " tokens is not possible (give a positive size, or 0 for the model's)");
  if (n_ctx == 0) n_ctx = std::min<int64_t>(model_->config().context_length, 4096);
  // Every slot has a KV cache of n_ctx positions: check them all together before the first lane
  // allocates (each Transformer checks only its own).
  check_kv_cache_fits(model_->config(), n_ctx, n_slots, kv_type_of(kv_cache).value_or(select_kernels(kernels).kv_type));
  const LaneShape shape = lane_shape(*model_, n_threads, n_slots);
  for (int i = 0; i < n_slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->lane = i % shape.lanes;
    slot->sequence = i / shape.lanes;
    slots_.push_back(std::move(slot));
  }
  for (int l = 0; l < shape.lanes; ++l) {
    auto lane = std::make_unique<Lane>();
    for (auto& s : slots_)
      if (s->lane == l) lane->slots.push_back(s.get());
    lane->transformer = std::make_unique<Transformer>(model_->impl(), select_kernels(kernels), n_ctx, shape.threads_per_lane,
                                                      static_cast<int64_t>(lane->slots.size()), kv_type_of(kv_cache));
    lanes_.push_back(std::move(lane));
  }
  n_ctx_ = lanes_.front()->transformer->n_ctx();
  for (auto& lane : lanes_) lane->thread = std::thread([this, l = lane.get()] { run(*l); });
}

constexpr const char* kShuttingDown = "the server is shutting down";

// Ends a job that never reached a slot.
static void refuse_for_shutdown(GenerationJob& job) {
  if (job.on_done) job.on_done(JobSummary{.stop = StopReason::cancelled, .error = kShuttingDown});
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& lane : lanes_) lane->thread.join();
  for (auto& [job, submitted] : queue_) refuse_for_shutdown(*job);
}

void Scheduler::submit(std::shared_ptr<GenerationJob> job) {
  bool accepted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepted = !stopping_;
    if (accepted) {
      queue_.emplace_back(job, Clock::now());
      place_queued();
    }
  }
  if (accepted) {
    wake_.notify_all();
    return;
  }
  refuse_for_shutdown(*job);
}

// Each job goes to the free slot whose cache shares the longest prefix with its prompt.
bool Scheduler::place_queued() {
  bool placed = false;
  while (!queue_.empty()) {
    Slot* best = nullptr;
    size_t best_common = 0;
    const std::vector<int32_t>& prompt = queue_.front().first->prompt;
    for (auto& s : slots_) {
      if (s->occupied) continue;
      size_t common = 0;
      while (common < s->cached.size() && common < prompt.size() && s->cached[common] == prompt[common]) ++common;
      if (!best || common > best_common) best = s.get(), best_common = common;
    }
    if (!best) break;
    best->occupied = true;
    best->placed = std::move(queue_.front().first);
    best->submitted = queue_.front().second;
    queue_.pop_front();
    placed = true;
  }
  metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
  return placed;
}

void Scheduler::admit(Slot& slot) {
  slot.summary = JobSummary{};
  slot.first_token = true;
  const std::vector<int32_t>& prompt = slot.job->prompt;
  slot.summary.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (slot.job->abandoned && slot.job->abandoned()) {
    finish(slot, StopReason::cancelled);
    return;
  }
  try {
    if (prompt.empty() || static_cast<int64_t>(prompt.size()) >= n_ctx_)
      fail("the prompt has ", prompt.size(), " tokens; the context holds ", n_ctx_);
    size_t common = 0;
    while (common < slot.cached.size() && common < prompt.size() && slot.cached[common] == prompt[common]) ++common;
    common = std::min(common, prompt.size() - 1);
    const int64_t vocab = model_->config().n_vocab;
    for (int32_t t : prompt)
      if (t < 0 || t >= vocab) fail("token id ", t, " is outside the vocabulary");
    slot.cached.resize(common);
    slot.summary.cached_prompt_tokens = static_cast<int64_t>(common);
    StreamOptions options = slot.job->options;
    options.sampling.kernels = kernels_;
    slot.stream = std::make_unique<TokenStream>(*tokenizer_, prompt, std::move(options));
    // The new prompt tokens go into the next batched pass beside the other requests' decode.
    slot.prefill.assign(prompt.begin() + static_cast<long>(common), prompt.end());
    metrics_.add_prompt_tokens(static_cast<int64_t>(slot.prefill.size()));
  } catch (const std::exception& e) {
    finish(slot, StopReason::cancelled, e.what());
  }
}

void Scheduler::finish(Slot& slot, StopReason reason, const std::string& error) {
  if (reason == StopReason::cancelled && error.empty()) metrics_.count_abandoned();  // the client left
  slot.summary.stop = reason;
  slot.summary.error = error;
  if (slot.stream) slot.summary.completion_tokens = slot.stream->generated();
  std::shared_ptr<GenerationJob> job = std::move(slot.job);
  slot.job.reset();
  slot.stream.reset();
  if (job && job->on_done) job->on_done(slot.summary);
}

bool Scheduler::sample(Slot& slot) {
  TokenStep step = std::move(slot.step);
  const Clock::time_point now = Clock::now();
  if (step.token >= 0 && step.stop != StopReason::end_of_sequence) {
    metrics_.add_generated_tokens(1);
    if (slot.first_token) metrics_.observe_time_to_first_token(std::chrono::duration<double>(now - slot.submitted).count());
    else metrics_.observe_token_latency(std::chrono::duration<double>(now - slot.last_token).count());
    slot.first_token = false;
    slot.last_token = now;
  }
  if (!slot.job->on_step(step)) {
    finish(slot, StopReason::cancelled);
    return false;
  }
  if (step.stop != StopReason::none) {
    finish(slot, step.stop);
    return false;
  }
  if (static_cast<int64_t>(slot.cached.size()) >= n_ctx_) {
    slot.job->on_step(slot.stream->finish(StopReason::context_full));
    finish(slot, StopReason::context_full);
    return false;
  }
  slot.next_token = step.token;
  return true;
}

// One forward pass for every slot: decoding slots add their sampled token, newly admitted ones
// their prompt; the weights are read once for the whole batch.
void Scheduler::decode(Lane& lane, const std::vector<Slot*>& slots) {
  if (slots.empty()) return;
  const size_t vocab = static_cast<size_t>(model_->config().n_vocab);
  std::vector<SequenceTokens> batch;
  for (Slot* s : slots) {
    const std::span<const int32_t> tokens =
        s->prefill.empty() ? std::span<const int32_t>(&s->next_token, 1) : std::span<const int32_t>(s->prefill);
    batch.push_back({s->sequence, static_cast<int64_t>(s->cached.size()), tokens, false});
  }
  // Kept until the next pass: each slot samples from its row in place (with a 150k vocabulary,
  // copying rows out would move megabytes per step).
  lane.logits.resize(slots.size() * vocab);
  lane.transformer->forward(batch, lane.logits.data());
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& s = *slots[i];
    if (s.prefill.empty()) {
      s.cached.push_back(s.next_token);
    } else {
      s.cached.insert(s.cached.end(), s.prefill.begin(), s.prefill.end());
      s.prefill.clear();
    }
    s.logits_row = static_cast<int64_t>(i);
  }
}

void Scheduler::run(Lane& lane) {
  std::vector<Slot*> admitted, decoding, continuing;
  while (true) {
    admitted.clear();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Slots whose job ended in the last step are free for the queue again.
      for (Slot* s : lane.slots)
        if (s->occupied && !s->job && !s->placed) s->occupied = false;
      // A slot freed here may take a queued job; so may another lane's (then that lane is woken).
      if (place_queued()) wake_.notify_all();
      auto busy = [&] {
        return std::any_of(lane.slots.begin(), lane.slots.end(), [](const Slot* s) { return s->occupied; });
      };
      wake_.wait(lock, [&] { return stopping_ || busy(); });
      if (stopping_) break;
      for (Slot* s : lane.slots)
        if (s->placed) {
          s->job = std::move(s->placed);
          admitted.push_back(s);
        }
    }
    for (Slot* s : admitted) admit(*s);
    // Pick every decoding slot's next token on the lane's threads (sampling a 150k vocabulary
    // is not free), then hand the tokens to their jobs in order.
    decoding.clear();
    for (Slot* s : lane.slots)
      if (s->job && s->prefill.empty()) decoding.push_back(s);
    const size_t vocab = static_cast<size_t>(model_->config().n_vocab);
    lane.transformer->pool().parallel_for(static_cast<int64_t>(decoding.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        Slot& s = *decoding[i];
        s.step = s.stream->next(std::span<float>(lane.logits.data() + static_cast<size_t>(s.logits_row) * vocab, vocab));
      }
    });
    continuing.clear();
    for (Slot* s : lane.slots) {
      if (!s->job) continue;
      if (!s->prefill.empty() || sample(*s)) continuing.push_back(s);
    }
    try {
      decode(lane, continuing);
    } catch (const std::exception& e) {
      for (Slot* s : continuing) finish(*s, StopReason::cancelled, e.what());
    }
    lane.active = static_cast<int64_t>(continuing.size());
    int64_t active = 0;
    for (const auto& l : lanes_) active += l->active;
    metrics_.set_active(active);
  }
  for (Slot* s : lane.slots) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (s->placed) s->job = std::move(s->placed);
    }
    if (s->job) finish(*s, StopReason::cancelled, kShuttingDown);
  }
}

}  // namespace orchard::server
