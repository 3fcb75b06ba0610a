#include "server/scheduler.h"

#include <algorithm>

#include "base/error.h"

namespace orchard::server {

using Clock = std::chrono::steady_clock;

// Forward-pass threads when the operator did not say: one for models this small, every CPU
// otherwise. Below some tens of millions of parameters each matrix product of a decode step
// takes a few microseconds, less than handing half of it to a second thread and waiting for
// that thread costs; the other cores are better left to the HTTP threads that stream the
// tokens (measured with bench/load_test.py: 1.4M parameters, 16 clients, one thread gave about
// twice the tokens per CPU-second of two).
int forward_threads(const Model& model, int requested) {
  constexpr int64_t kSmallModelParameters = 32'000'000;
  if (requested > 0) return requested;
  return model.parameter_count() < kSmallModelParameters ? 1 : 0;
}

// A place in the batch: its own KV cache, which keeps the last request's tokens so that a
// follow-up turn of the same conversation prefills only what is new.
struct Scheduler::Slot {
  int64_t sequence = 0;          // its KV cache in the transformer
  std::vector<int32_t> cached;  // tokens whose keys and values are in the cache
  int32_t next_token = -1;      // sampled, to be decoded in the next batch
  std::vector<int32_t> prefill;  // prompt tokens still to run (a newly admitted request)
  TokenStep step;                // picked from `logits`, not yet handed to the job
  std::shared_ptr<GenerationJob> job;
  std::unique_ptr<TokenStream> stream;
  int64_t logits_row = -1;    // its row of the last pass's logits (of its last evaluated position)
  JobSummary summary;
  Clock::time_point submitted, last_token;
  bool first_token = true;
};

Scheduler::Scheduler(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, int n_slots,
                     int64_t n_ctx, KernelChoice kernels, int n_threads, KvCacheType kv_cache, Metrics& metrics)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), n_ctx_(n_ctx), metrics_(metrics) {
  if (n_slots < 1) fail("--parallel must be at least 1");
  if (n_ctx <= 0) n_ctx = std::min<int64_t>(model_->config().context_length, 4096);
  transformer_ = std::make_unique<Transformer>(model_->impl(), select_kernels(kernels), n_ctx,
                                               forward_threads(*model_, n_threads), n_slots, kv_type_of(kv_cache));
  n_ctx_ = transformer_->n_ctx();
  for (int i = 0; i < n_slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->sequence = i;
    slots_.push_back(std::move(slot));
  }
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Scheduler::submit(std::shared_ptr<GenerationJob> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(std::move(job), Clock::now());
    metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
  }
  wake_.notify_one();
}

void Scheduler::admit(Slot& slot, std::shared_ptr<GenerationJob> job) {
  slot.job = std::move(job);
  slot.summary = JobSummary{};
  slot.first_token = true;
  const std::vector<int32_t>& prompt = slot.job->prompt;
  slot.summary.prompt_tokens = static_cast<int64_t>(prompt.size());
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
    slot.stream = std::make_unique<TokenStream>(*tokenizer_, prompt, slot.job->options);
    // The new prompt tokens go into the next batched pass beside the other requests' decode.
    slot.prefill.assign(prompt.begin() + static_cast<long>(common), prompt.end());
    metrics_.add_prompt_tokens(static_cast<int64_t>(slot.prefill.size()));
  } catch (const std::exception& e) {
    finish(slot, StopReason::cancelled, e.what());
  }
}

void Scheduler::finish(Slot& slot, StopReason reason, const std::string& error) {
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
void Scheduler::decode(const std::vector<Slot*>& slots) {
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
  logits_.resize(slots.size() * vocab);
  transformer_->forward(batch, logits_.data());
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

void Scheduler::run() {
  while (true) {
    // Admit waiting requests into free slots, preferring the slot whose cache shares the
    // longest prefix with the request.
    std::vector<std::pair<std::shared_ptr<GenerationJob>, Clock::time_point>> admitted;
    std::vector<Slot*> targets;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto busy = [&] {
        return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->job != nullptr; });
      };
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy(); });
      if (stopping_) break;
      while (!queue_.empty()) {
        Slot* best = nullptr;
        size_t best_common = 0;
        const std::vector<int32_t>& prompt = queue_.front().first->prompt;
        for (auto& s : slots_) {
          if (s->job || std::find(targets.begin(), targets.end(), s.get()) != targets.end()) continue;
          size_t common = 0;
          while (common < s->cached.size() && common < prompt.size() && s->cached[common] == prompt[common]) ++common;
          if (!best || common > best_common) best = s.get(), best_common = common;
        }
        if (!best) break;
        targets.push_back(best);
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
    }
    for (size_t i = 0; i < admitted.size(); ++i) {
      targets[i]->submitted = admitted[i].second;
      admit(*targets[i], std::move(admitted[i].first));
    }
    // Pick every decoding slot's next token on the pool's threads (sampling a 150k vocabulary
    // is not free), then hand the tokens to their jobs in order.
    std::vector<Slot*> decoding;
    for (auto& s : slots_)
      if (s->job && s->prefill.empty()) decoding.push_back(s.get());
    const size_t vocab = static_cast<size_t>(model_->config().n_vocab);
    transformer_->pool().parallel_for(static_cast<int64_t>(decoding.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        Slot& s = *decoding[i];
        s.step = s.stream->next(std::span<float>(logits_.data() + static_cast<size_t>(s.logits_row) * vocab, vocab));
      }
    });
    std::vector<Slot*> continuing;
    for (auto& s : slots_) {
      if (!s->job) continue;
      if (!s->prefill.empty() || sample(*s)) continuing.push_back(s.get());
    }
    try {
      decode(continuing);
    } catch (const std::exception& e) {
      for (Slot* s : continuing) finish(*s, StopReason::cancelled, e.what());
    }
    metrics_.set_active(static_cast<int64_t>(continuing.size()));
  }
  for (auto& s : slots_)
    if (s->job) finish(*s, StopReason::cancelled, "the server is shutting down");
  for (auto& [job, submitted] : queue_) {
    JobSummary summary{.stop = StopReason::cancelled, .error = "the server is shutting down"};
    if (job->on_done) job->on_done(summary);
  }
}

}  // namespace orchard::server
