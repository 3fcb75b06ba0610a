#include "orchard/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "kernels/thread_pool.h"
#include "model/context_size.h"
#include "model/model_impl.h"
#include "model/transformer.h"
#include "runtime/prompt_limits.h"
#include "runtime/speculation.h"
#include "runtime/token_stream.h"

namespace orchard {

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

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

static LaneShape lane_shape(const Model& model, int requested_threads, int n_slots) {
  constexpr int64_t kSmallModelParameters = 32'000'000;
  const bool small = model.parameter_count() < kSmallModelParameters && !model.impl().flash;
  if (!small) return {1, requested_threads};
  const int threads = requested_threads > 0 ? requested_threads : available_cpus();
  return {std::clamp(threads, 1, n_slots), 1};
}

namespace {

constexpr const char* kShuttingDown = "the engine is shutting down";

// A place in a batch: its own KV cache, which keeps the last job's tokens so that a follow-up
// turn of the same conversation prefills only what is new.
struct Slot {
  int lane = 0;
  int64_t sequence = 0;  // its KV cache in the lane's transformer
  // Guarded by the engine's mutex: a job placed here and not yet taken by the lane, and whether
  // the slot is taken at all (placed or running). `cached` is read under the mutex to place jobs
  // and written by the lane only while it holds the slot, so no two threads touch it at once.
  std::shared_ptr<GenerationJob> placed;
  bool occupied = false;
  bool forget = false;  // clear_cache came while the slot was taken: empty `cached` when it frees
  std::vector<int32_t> cached;   // tokens whose keys and values are in the cache
  // The adapter the cache was computed with: a prefix is shared only between jobs of the same one.
  std::shared_ptr<const Adapter> cached_adapter;
  // The rest belongs to the lane's thread.
  // The next pass's tokens: the one picked, then the draft to verify (speculative decoding).
  std::vector<int32_t> pending;
  std::vector<TokenDistribution> draft_q;  // each draft token's draft distribution; empty: n-gram's
  int64_t drafted = 0, accepted = 0;       // draft tokens in the last pass, and those kept
  std::vector<int32_t> draft_cached;       // tokens in the draft model's cache of this slot
  Rng draft_rng{0};                        // the draft model's draws, apart from the job's own
  std::vector<int32_t> prefill;  // prompt tokens still to run (a newly admitted job)
  std::vector<TokenStep> steps;  // picked from the lane's logits, not yet handed to the job
  // StreamOptions::prompt_logprobs: the logits of the prefill's last `prefill_logit_rows`
  // positions are asked of its pass (1: the last only, which picks the first token), and the
  // prompt tokens' steps wait here to go to the job before its first generated one.
  int64_t prefill_logit_rows = 1;
  std::vector<TokenStep> prompt_steps;
  std::vector<float> embedding;  // an embedding job's pooled vector, from its prefill's pass
  // The logits of the last cached position, kept from a prefill whose job ends at it (a scoring
  // job's, max_tokens 0 or 1; copied before any sampler reads the row): a next job whose prompt is exactly `cached` picks its first
  // token from them instead of recomputing its last prompt token. The router's pre mode scores a
  // prompt, then generates on it; without these the second job would pay one more decode pass.
  std::vector<float> kept_logits;
  bool logits_kept = false;       // kept_logits are those of `cached` as it is now
  bool sample_from_kept = false;  // this round's pick reads kept_logits, not the lane's row
  std::shared_ptr<GenerationJob> job;
  std::unique_ptr<TokenStream> stream;
  int64_t logits_row = -1;  // its row of the lane's last pass's logits (of its last evaluated position)
  JobSummary summary;
  Clock::time_point submitted, last_token;
  bool first_token = true;
};

struct Lane {
  std::unique_ptr<Transformer> transformer;  // one KV cache per slot of the lane
  std::unique_ptr<Transformer> draft;        // the draft model's, on the same threads
  std::vector<float> draft_logits;
  std::vector<Slot*> slots;
  std::vector<float> logits;  // [slots in the last pass, n_vocab]: the next tokens' logits
  std::vector<float> hidden;  // [rows, dim]: the embedding jobs' normed final hidden states of the last pass
  std::atomic<int64_t> active{0};
  std::thread thread;
};

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// Ends a job that never reached a slot.
void refuse_for_shutdown(GenerationJob& job) {
  if (job.on_done) job.on_done(JobSummary{.stop = StopReason::cancelled, .error = kShuttingDown});
}

}  // namespace

struct Engine::Impl {
  Impl(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, const EngineOptions& options);
  ~Impl();

  // Under mutex: moves queued jobs into free slots of any lane; true if it placed any.
  bool place_queued();
  void admit(Slot& slot);
  // Hands the slot's picked step to its job; true when the slot goes on to the next decode step.
  bool deliver(Slot& slot);
  int64_t decode(Lane& lane, const std::vector<Slot*>& slots);  // the pass's tokens
  // Picks a decoding slot's next tokens from the last pass: one, or the kept part of its draft
  // and the token after it.
  void pick(Lane& lane, Slot& slot);
  // Drafts the next tokens of each decoding slot into its `pending` (speculative decoding).
  void propose(Lane& lane, const std::vector<Slot*>& slots);
  void draft_with_model(Lane& lane, const std::vector<std::pair<Slot*, int64_t>>& drafting);
  void finish(Slot& slot, StopReason reason, const std::string& error = "");
  void pool_embedding(Slot& slot, const float* hidden, int64_t rows);
  // Queues `jobs` together (placed in slots under one lock) and wakes the lanes; after a stop,
  // each is refused instead.
  void enqueue(std::span<const std::shared_ptr<GenerationJob>> jobs);
  void run(Lane& lane);

  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  int64_t n_ctx = 0;
  KernelChoice kernels;
  bool share_prefix = true;
  SpeculationOptions speculation;
  EngineObserver no_observer;
  EngineObserver& observer;
  std::vector<std::unique_ptr<Slot>> slots;  // every lane's
  std::vector<std::unique_ptr<Lane>> lanes;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::pair<std::shared_ptr<GenerationJob>, Clock::time_point>> queue;
  bool stopping = false;
};

Engine::Impl::Impl(std::shared_ptr<const Model> model_in, std::shared_ptr<const Tokenizer> tokenizer_in,
                   const EngineOptions& options)
    : model(std::move(model_in)),
      tokenizer(std::move(tokenizer_in)),
      kernels(options.kernels),
      share_prefix(options.share_prefix),
      speculation(options.speculation),
      observer(options.observer ? *options.observer : no_observer) {
  if (!model) fail("engine: no model");
  if (!tokenizer) fail("engine: no tokenizer");
  if (options.slots < 1) fail("--parallel must be at least 1");
  const int64_t ctx = resolve_context_size(model->config(), options.n_ctx);
  // Every slot has a KV cache of ctx positions: check them all together before the first lane
  // allocates (each Transformer checks only its own).
  check_kv_cache_fits(model->config(), ctx, options.slots,
                      kv_type_of(options.kv_cache).value_or(select_kernels(kernels).kv_type));
  check_speculation(speculation, *model, *tokenizer);
  const LaneShape shape = lane_shape(*model, options.n_threads, options.slots);
  for (int i = 0; i < options.slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->lane = i % shape.lanes;
    slot->sequence = i / shape.lanes;
    slots.push_back(std::move(slot));
  }
  for (int l = 0; l < shape.lanes; ++l) {
    auto lane = std::make_unique<Lane>();
    for (auto& s : slots)
      if (s->lane == l) lane->slots.push_back(s.get());
    lane->transformer = std::make_unique<Transformer>(model->impl(), select_kernels(kernels), ctx, shape.threads_per_lane,
                                                      static_cast<int64_t>(lane->slots.size()), kv_type_of(options.kv_cache));
    if (speculation.mode == SpeculationMode::draft_model)
      lane->draft = std::make_unique<Transformer>(speculation.draft_model->impl(), select_kernels(kernels), ctx, 0,
                                                  static_cast<int64_t>(lane->slots.size()), kv_type_of(options.kv_cache),
                                                  &lane->transformer->pool());
    lanes.push_back(std::move(lane));
  }
  n_ctx = lanes.front()->transformer->n_ctx();
  for (auto& lane : lanes) lane->thread = std::thread([this, l = lane.get()] { run(*l); });
}

Engine::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (auto& lane : lanes) lane->thread.join();
  for (auto& [job, submitted] : queue) refuse_for_shutdown(*job);
}

// Each job goes to the free slot whose cache shares the longest prefix with its prompt.
bool Engine::Impl::place_queued() {
  bool placed = false;
  while (!queue.empty()) {
    Slot* best = nullptr;
    size_t best_common = 0;
    const std::vector<int32_t>& prompt = queue.front().first->prompt;
    for (auto& s : slots) {
      if (s->occupied) continue;
      const size_t common = s->cached_adapter == queue.front().first->adapter ? common_prefix(s->cached, prompt) : 0;
      if (!best || common > best_common) best = s.get(), best_common = common;
    }
    if (!best) break;
    best->occupied = true;
    best->placed = std::move(queue.front().first);
    best->submitted = queue.front().second;
    queue.pop_front();
    placed = true;
  }
  observer.on_queue_depth(static_cast<int64_t>(queue.size()));
  return placed;
}

void Engine::Impl::admit(Slot& slot) {
  slot.summary = JobSummary{};
  slot.first_token = true;
  const std::vector<int32_t>& prompt = slot.job->prompt;
  slot.summary.prompt_tokens = static_cast<int64_t>(prompt.size());
  const bool kept = slot.logits_kept;
  slot.logits_kept = false;  // whatever this job does, they will not describe its cache
  slot.sample_from_kept = false;
  slot.drafted = 0;
  slot.pending.clear();
  slot.draft_q.clear();
  slot.draft_rng = Rng(slot.job->options.sampling.seed ^ 0x5bd1e995d1a95e5bull);
  if (slot.cached_adapter != slot.job->adapter) {  // keys and values of another adapter
    slot.cached.clear();
    slot.cached_adapter = slot.job->adapter;
  }
  if (slot.job->abandoned && slot.job->abandoned()) {
    finish(slot, StopReason::cancelled);
    return;
  }
  try {
    if (prompt.empty()) fail("the prompt has no tokens");
    const bool embedding = slot.job->embedding.has_value();
    if (!embedding) orchard::check_prompt_fits(static_cast<int64_t>(prompt.size()), n_ctx);
    else if (static_cast<int64_t>(prompt.size()) > n_ctx)  // nothing is generated: the prompt may fill the context
      fail("the input has ", prompt.size(), " tokens; the context holds ", n_ctx);
    const int64_t vocab = model->config().n_vocab;
    for (int32_t t : prompt)
      if (t < 0 || t >= vocab) fail("token id ", t, " is outside the vocabulary");
    // Keep the common prefix, but always recompute at least the last prompt token: its logits
    // choose the first new token.
    size_t first_with_logits = prompt.size() - 1;
    slot.prefill_logit_rows = 1;
    slot.prompt_steps.clear();
    if (embedding && *slot.job->embedding == Pooling::mean) {  // every position's hidden state
      first_with_logits = 0;
      slot.prefill_logit_rows = static_cast<int64_t>(prompt.size());
    } else if (!embedding && slot.job->options.prompt_logprobs >= 0) {
      // Token i's logprobs come from position i - 1's logits: scoring the last `scored` tokens
      // needs the positions from n - 1 - scored on, and only a prefix before them may be cached.
      const int64_t last = slot.job->options.prompt_logprobs_last;
      if (last < 0) fail("prompt_logprobs_last must be >= 0 (0: every prompt token), got ", last);
      const size_t every = prompt.size() - 1;
      const size_t scored = last == 0 ? every : std::min(every, static_cast<size_t>(last));
      first_with_logits = every - scored;
      slot.prefill_logit_rows = static_cast<int64_t>(scored) + 1;
    }
    size_t common = std::min(common_prefix(slot.cached, prompt), first_with_logits);
    // The whole prompt is cached with its last position's logits: nothing to recompute.
    if (!embedding && kept && slot.job->options.prompt_logprobs < 0 && slot.cached.size() == prompt.size() &&
        common_prefix(slot.cached, prompt) == prompt.size()) {
      common = prompt.size();
      slot.sample_from_kept = true;
    }
    slot.cached.resize(common);
    slot.summary.cached_prompt_tokens = static_cast<int64_t>(common);
    slot.prefill.assign(prompt.begin() + static_cast<long>(common), prompt.end());
    if (embedding) {  // no stream: nothing is sampled
      observer.on_prefill(static_cast<int64_t>(slot.prefill.size()));
      return;
    }
    StreamOptions options = slot.job->options;
    options.sampling.kernels = kernels;
    // What the context leaves is the budget when none is set, so that a constraint steers to a
    // close within it.
    const int64_t room = n_ctx - static_cast<int64_t>(prompt.size());
    if (options.max_tokens < 0 || options.max_tokens > room) options.max_tokens = room;
    slot.stream = std::make_unique<TokenStream>(*tokenizer, prompt, std::move(options));
    if (speculation.accept_every_draft_for_testing) slot.stream->accept_every_draft_for_testing();
    // The new prompt tokens go into the next batched pass beside the other jobs' decode.
    observer.on_prefill(static_cast<int64_t>(slot.prefill.size()));
  } catch (const std::exception& e) {
    finish(slot, StopReason::cancelled, e.what());
  }
}

void Engine::Impl::finish(Slot& slot, StopReason reason, const std::string& error) {
  if (reason == StopReason::cancelled && error.empty()) observer.on_abandoned();  // the client left
  slot.summary.stop = reason;
  slot.summary.error = error;
  if (slot.stream) slot.summary.completion_tokens = slot.stream->generated();
  std::shared_ptr<GenerationJob> job = std::move(slot.job);
  slot.job.reset();
  if (!share_prefix) {  // on the lane's thread, which alone touches the slot's cache now
    // Every position the job may have written: its tokens, and those of a pass that failed.
    Lane& lane = *lanes[static_cast<size_t>(slot.lane)];
    const size_t written = slot.cached.size() + slot.prefill.size() + slot.pending.size() + 1;
    lane.transformer->erase_cache(slot.sequence, static_cast<int64_t>(written));
    if (lane.draft)
      lane.draft->erase_cache(slot.sequence, static_cast<int64_t>(slot.draft_cached.size() + slot.pending.size() + 1));
    slot.cached.clear();
    slot.draft_cached.clear();
    slot.logits_kept = false;
  }
  slot.stream.reset();
  slot.prefill.clear();
  slot.pending.clear();
  slot.draft_q.clear();
  slot.drafted = 0;
  slot.prompt_steps.clear();
  slot.embedding.clear();
  slot.sample_from_kept = false;
  if (job && job->on_done) job->on_done(slot.summary);
}

bool Engine::Impl::deliver(Slot& slot) {
  for (const TokenStep& prompt_step : slot.prompt_steps)
    if (!slot.job->on_step(prompt_step)) {
      finish(slot, StopReason::cancelled);
      return false;
    }
  slot.prompt_steps.clear();
  for (TokenStep& step : slot.steps) {
    const Clock::time_point now = Clock::now();
    if (step.token >= 0 && step.stop != StopReason::end_of_sequence) {
      observer.on_token(slot.first_token,
                        std::chrono::duration<double>(now - (slot.first_token ? slot.submitted : slot.last_token)).count());
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
  }
  if (static_cast<int64_t>(slot.cached.size()) >= n_ctx) {  // cannot happen with the budget admit sets
    slot.job->on_step(slot.stream->finish(StopReason::context_full));
    finish(slot, StopReason::context_full);
    return false;
  }
  slot.pending.assign(1, slot.steps.back().token);
  slot.draft_q.clear();
  return true;
}

void Engine::Impl::enqueue(std::span<const std::shared_ptr<GenerationJob>> jobs) {
  bool accepted;
  {
    std::lock_guard<std::mutex> lock(mutex);
    accepted = !stopping;
    if (accepted) {
      for (const auto& job : jobs) queue.emplace_back(job, Clock::now());
      place_queued();
    }
  }
  if (accepted) {
    wake.notify_all();
    return;
  }
  for (const auto& job : jobs) refuse_for_shutdown(*job);
}

// Pools an embedding job's `rows` normed hidden states [rows, dim] (the last position's, or every
// position's) into its unit vector, in double: the vector depends on the rows alone, not on the
// batch or the order of a sum spread over threads.
void Engine::Impl::pool_embedding(Slot& slot, const float* hidden, int64_t rows) {
  const size_t dim = static_cast<size_t>(model->config().dim);
  std::vector<double> sum(dim, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < dim; ++i) sum[i] += hidden[static_cast<size_t>(r) * dim + i];
  double norm2 = 0;
  for (double v : sum) norm2 += v * v;
  // The mean's 1/rows cancels in the normalisation.
  const double scale = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
  slot.embedding.resize(dim);
  for (size_t i = 0; i < dim; ++i) slot.embedding[i] = static_cast<float>(sum[i] * scale);
}

// One forward pass for every slot: decoding slots add their picked token, newly admitted ones
// their prompt; the weights are read once for the whole batch.
int64_t Engine::Impl::decode(Lane& lane, const std::vector<Slot*>& batch_slots) {
  if (batch_slots.empty()) return 0;
  const size_t vocab = static_cast<size_t>(model->config().n_vocab);
  const size_t dim = static_cast<size_t>(model->config().dim);
  std::vector<SequenceTokens> batch;
  size_t rows = 0, hidden_rows = 0;
  for (Slot* s : batch_slots) {
    s->logits_kept = s->sample_from_kept = false;  // the pass changes the cache (or fails)
    const std::span<const int32_t> tokens = s->prefill.empty() ? s->pending : s->prefill;
    // A prompt whose logprobs are asked for gives the logits of the positions they need; a
    // draft one row per token, each checking the next.
    const int64_t logit_rows = s->prefill.empty() ? static_cast<int64_t>(s->pending.size()) : s->prefill_logit_rows;
    batch.push_back({.sequence = s->sequence,
                     .start = static_cast<int64_t>(s->cached.size()),
                     .tokens = tokens,
                     .logit_rows = logit_rows,
                     .adapter = s->job->adapter.get(),
                     .wants_logits = !s->job->embedding});
    (s->job->embedding ? hidden_rows : rows) += static_cast<size_t>(logit_rows);
  }
  // An embedding job's rows get their normed hidden states here instead of logits.
  if (lane.hidden.size() < hidden_rows * dim) lane.hidden.resize(hidden_rows * dim);
  for (size_t i = 0, at = 0; i < batch.size(); ++i)
    if (!batch[i].wants_logits) {
      batch[i].hidden = lane.hidden.data() + at * dim;
      at += static_cast<size_t>(batch[i].logit_rows);
    }
  // Kept until the next pass: each slot samples from its row in place (with a 150k vocabulary,
  // copying rows out would move megabytes per step). It only grows: a scoring pass's many rows
  // would otherwise be zero-filled anew (tens of megabytes) every time.
  if (lane.logits.size() < rows * vocab) lane.logits.resize(rows * vocab);
  lane.transformer->forward(batch, lane.logits.data());
  std::vector<const Adapter*> adapters;
  for (const SequenceTokens& entry : batch)
    if (entry.adapter && std::find(adapters.begin(), adapters.end(), entry.adapter) == adapters.end())
      adapters.push_back(entry.adapter);
  observer.on_pass(static_cast<int64_t>(batch.size()), static_cast<int64_t>(adapters.size()));
  // Prompt tokens' logprobs: a log-softmax over the vocabulary per row, spread over the lane's
  // threads (64 rows of a 150k vocabulary are milliseconds on one).
  struct PromptRow {
    Slot* slot;
    size_t step, row;  // its step in the slot's prompt_steps, its row of the logits
  };
  std::vector<PromptRow> prompt_rows;
  size_t row = 0;
  for (size_t i = 0; i < batch_slots.size(); ++i) {
    Slot& s = *batch_slots[i];
    if (s.job->embedding) {
      pool_embedding(s, batch[i].hidden, batch[i].logit_rows);
      s.cached.insert(s.cached.end(), s.prefill.begin(), s.prefill.end());
      s.prefill.clear();
      continue;
    }
    if (!s.prefill.empty() && batch[i].logit_rows > 1) {
      // The k rows are those of the prefill's last k positions: row j predicts the prefill's
      // token n - k + j + 1.
      const size_t n = batch[i].tokens.size(), k = static_cast<size_t>(batch[i].logit_rows);
      for (size_t j = 0; j + 1 < k; ++j) {
        TokenStep step;
        step.token = s.prefill[n - k + j + 1];
        step.prompt = true;
        prompt_rows.push_back({&s, s.prompt_steps.size(), row + j});
        s.prompt_steps.push_back(std::move(step));
      }
      row += k - 1;
    }
    s.logits_row = static_cast<int64_t>(row);
    row += s.prefill.empty() ? s.pending.size() : 1;
    // A scoring job ends without sampling (max_tokens 0) or after the one token it picks from this
    // row (max_tokens 1: the router's, for its next-token features): either way the row is kept
    // as the pass left it, before any sampler reads it, for the next job on the same prompt.
    const int64_t wanted = s.job->options.max_tokens;
    if (share_prefix && !s.prefill.empty() && (wanted == 0 || wanted == 1)) {
      s.kept_logits.assign(lane.logits.begin() + static_cast<ptrdiff_t>(s.logits_row * vocab),
                           lane.logits.begin() + static_cast<ptrdiff_t>((s.logits_row + 1) * vocab));
      s.logits_kept = true;
    }
    if (s.prefill.empty()) {
      s.cached.insert(s.cached.end(), s.pending.begin(), s.pending.end());
      s.drafted = static_cast<int64_t>(s.pending.size()) - 1;
    } else {
      s.cached.insert(s.cached.end(), s.prefill.begin(), s.prefill.end());
      s.prefill.clear();
    }
  }
  if (!prompt_rows.empty()) {
    // Padding rows beyond the tokenizer's vocabulary are no tokens.
    const size_t tokens = std::min(vocab, static_cast<size_t>(tokenizer->vocab_size()));
    const Kernels& k = select_kernels(kernels);
    lane.transformer->pool().parallel_for(static_cast<int64_t>(prompt_rows.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const PromptRow& r = prompt_rows[static_cast<size_t>(i)];
        TokenStep& step = r.slot->prompt_steps[r.step];
        const size_t width = static_cast<size_t>(step.token) < tokens ? tokens : vocab;  // a token only the model knows
        fill_logprobs(k, std::span<const float>(lane.logits.data() + r.row * vocab, width), step.token,
                      r.slot->job->options.prompt_logprobs, step);
      }
    });
  }
  int64_t tokens = 0;
  for (const SequenceTokens& entry : batch) tokens += static_cast<int64_t>(entry.tokens.size());
  return tokens;
}

void Engine::Impl::pick(Lane& lane, Slot& s) {
  const size_t vocab = static_cast<size_t>(model->config().n_vocab);
  s.steps.clear();
  s.accepted = 0;
  if (s.sample_from_kept) {
    s.steps.push_back(s.stream->next(std::span<float>(s.kept_logits.data(), vocab)));
    return;
  }
  // Row j of the pass holds the logits after pending[j]: it checks draft token pending[j + 1],
  // and the row after the last kept one gives the next token.
  for (int64_t j = 0; j <= s.drafted; ++j) {
    const std::span<float> logits(lane.logits.data() + static_cast<size_t>(s.logits_row + j) * vocab, vocab);
    if (j == s.drafted) {
      s.steps.push_back(s.stream->next(logits));
      break;
    }
    const int32_t draft = s.pending[static_cast<size_t>(j + 1)];
    s.steps.push_back(s.stream->verify(logits, draft, s.draft_q.empty() ? nullptr : &s.draft_q[static_cast<size_t>(j)]));
    const TokenStep& step = s.steps.back();
    if (step.token != draft) break;
    ++s.accepted;
    if (step.stop != StopReason::none) break;
  }
  // The pass cached the whole draft: what was not kept is forgotten (the next pass overwrites
  // its positions).
  s.cached.resize(s.cached.size() - static_cast<size_t>(s.drafted - s.accepted));
}

void Engine::Impl::propose(Lane& lane, const std::vector<Slot*>& slots) {
  if (speculation.mode == SpeculationMode::off) return;
  std::vector<std::pair<Slot*, int64_t>> drafting;  // a slot and how many tokens it may draft
  for (Slot* s : slots) {
    if (!s->prefill.empty()) continue;  // its pass is its prompt's
    // The pass holds pending[0] and the draft: it must fit in the context, and the draft's
    // tokens and the one after them within the job's budget.
    const int64_t room = n_ctx - static_cast<int64_t>(s->cached.size()) - 1;
    const int64_t k = std::min({static_cast<int64_t>(speculation.draft_max), room, s->stream->remaining() - 1});
    if (k <= 0 || k < speculation.draft_min) continue;
    if (speculation.mode == SpeculationMode::ngram) {
      thread_local std::vector<int32_t> context;
      context.assign(s->cached.begin(), s->cached.end());
      context.push_back(s->pending[0]);
      const std::vector<int32_t> draft = prompt_lookup(context, k, speculation.ngram_max, speculation.ngram_min);
      if (static_cast<int64_t>(draft.size()) >= std::max(1, speculation.draft_min))
        s->pending.insert(s->pending.end(), draft.begin(), draft.end());
    } else {
      drafting.emplace_back(s, k);
    }
  }
  if (!drafting.empty()) draft_with_model(lane, drafting);
}

// The draft model drafts k tokens per slot in k batched passes: the first brings its cache up to
// the slot's context (usually the last token or two; a whole prompt after admission), each next
// one feeds the token just drafted. Each draft token is drawn with a copy of the job's sampler
// (its penalties and filters, its own random stream), and the distribution it was drawn from is
// kept for the verification's acceptance test.
void Engine::Impl::draft_with_model(Lane& lane, const std::vector<std::pair<Slot*, int64_t>>& drafting) {
  const Model& draft_model = *speculation.draft_model;
  const size_t vocab = static_cast<size_t>(draft_model.config().n_vocab);
  const size_t tokens = std::min(vocab, static_cast<size_t>(tokenizer->vocab_size()));
  std::vector<Sampler> samplers;
  std::vector<std::vector<int32_t>> feeds(drafting.size());
  for (const auto& [s, k] : drafting) {
    samplers.push_back(s->stream->draft_sampler(s->draft_rng.next()));
    // The draft cache keeps what it shares with the slot's context; at least the last token is
    // fed again, for its logits.
    std::vector<int32_t>& feed = feeds[samplers.size() - 1];
    const size_t context = s->cached.size() + 1;
    size_t common = std::min(common_prefix(s->draft_cached, s->cached), context - 1);
    s->draft_cached.resize(common);
    feed.assign(s->cached.begin() + static_cast<ptrdiff_t>(common), s->cached.end());
    feed.push_back(s->pending[0]);
  }
  int64_t most = 0;
  for (const auto& [s, k] : drafting) most = std::max(most, k);
  std::vector<SequenceTokens> batch;
  std::vector<size_t> in_batch;
  for (int64_t round = 0; round < most; ++round) {
    batch.clear();
    in_batch.clear();
    for (size_t i = 0; i < drafting.size(); ++i) {
      Slot& s = *drafting[i].first;
      if (round >= drafting[i].second) continue;
      if (round > 0) feeds[i].assign(1, s.pending.back());
      batch.push_back({.sequence = s.sequence, .start = static_cast<int64_t>(s.draft_cached.size()), .tokens = feeds[i]});
      in_batch.push_back(i);
    }
    if (lane.draft_logits.size() < batch.size() * vocab) lane.draft_logits.resize(batch.size() * vocab);
    lane.draft->forward(batch, lane.draft_logits.data());
    for (size_t b = 0; b < in_batch.size(); ++b) {
      const size_t i = in_batch[b];
      Slot& s = *drafting[i].first;
      s.draft_cached.insert(s.draft_cached.end(), feeds[i].begin(), feeds[i].end());
      float* row = lane.draft_logits.data() + b * vocab;
      std::fill(row + tokens, row + vocab, -INFINITY);  // padding rows are no tokens
      TokenDistribution& q = s.draft_q.emplace_back();
      samplers[i].distribution(std::span<const float>(row, tokens), q);
      const int32_t token = samplers[i].draw(q);
      samplers[i].remember_generated(token);
      s.pending.push_back(token);
    }
  }
}

void Engine::Impl::run(Lane& lane) {
  std::vector<Slot*> admitted, decoding, continuing;
  while (true) {
    admitted.clear();
    {
      std::unique_lock<std::mutex> lock(mutex);
      // Slots whose job ended in the last step are free for the queue again.
      for (Slot* s : lane.slots)
        if (s->occupied && !s->job && !s->placed) {
          s->occupied = false;
          if (s->forget) s->cached.clear(), s->draft_cached.clear(), s->logits_kept = false, s->forget = false;
        }
      // A slot freed here may take a queued job; so may another lane's (then that lane is woken).
      if (place_queued()) wake.notify_all();
      auto busy = [&] {
        return std::any_of(lane.slots.begin(), lane.slots.end(), [](const Slot* s) { return s->occupied; });
      };
      wake.wait(lock, [&] { return stopping || busy(); });
      if (stopping) break;
      for (Slot* s : lane.slots)
        if (s->placed) {
          s->job = std::move(s->placed);
          admitted.push_back(s);
        }
    }
    for (Slot* s : admitted) admit(*s);
    // Pick every decoding slot's next token on the lane's threads (sampling a 150k vocabulary
    // is not free), then hand the steps to their jobs in order.
    decoding.clear();
    for (Slot* s : lane.slots)
      if (s->job && s->prefill.empty()) {
        if (s->job->embedding) {  // its pass is done: the vector is its answer
          s->summary.embedding = std::move(s->embedding);
          finish(*s, StopReason::none);
          continue;
        }
        decoding.push_back(s);
      }
    const Clock::time_point pick_start = Clock::now();
    lane.transformer->pool().parallel_for(static_cast<int64_t>(decoding.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        pick(lane, *decoding[i]);
      }
    });
    const double pick_seconds = seconds_since(pick_start);
    for (Slot* s : decoding)
      if (s->drafted > 0) {
        observer.on_speculation(s->drafted, s->accepted);
        s->summary.drafted_tokens += s->drafted;
        s->summary.accepted_tokens += s->accepted;
        s->drafted = 0;
      }
    continuing.clear();
    for (Slot* s : lane.slots) {
      if (!s->job) continue;
      if (!s->prefill.empty() || deliver(*s)) continuing.push_back(s);
    }
    try {
      propose(lane, continuing);
      const Clock::time_point pass_start = Clock::now();
      const int64_t tokens = decode(lane, continuing);
      observer.on_step(static_cast<int64_t>(decoding.size()), static_cast<int64_t>(continuing.size()), tokens,
                       pick_seconds, tokens > 0 ? seconds_since(pass_start) : 0.0);
    } catch (const std::exception& e) {
      // The caches of a failed pass hold nothing to reuse.
      for (Slot* s : continuing) {
        finish(*s, StopReason::cancelled, e.what());
        s->cached.clear();
        s->draft_cached.clear();
      }
    }
    lane.active = static_cast<int64_t>(continuing.size());
    int64_t active = 0;
    for (const auto& l : lanes) active += l->active;
    observer.on_active(active);
  }
  for (Slot* s : lane.slots) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (s->placed) s->job = std::move(s->placed);
    }
    if (s->job) finish(*s, StopReason::cancelled, kShuttingDown);
  }
}

Engine::Engine(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(tokenizer), options)) {}

Engine::~Engine() = default;

void Engine::submit(std::shared_ptr<GenerationJob> job) {
  if (!job) fail("engine: no job");
  if (!job->on_step && !job->embedding) fail("engine: a job needs on_step");
  impl_->enqueue({&job, 1});
}

JobSummary Engine::run(GenerationJob job) {
  std::mutex mutex;
  std::condition_variable done;
  bool finished = false;
  JobSummary summary;
  auto shared = std::make_shared<GenerationJob>(std::move(job));
  std::function<void(const JobSummary&)> on_done = std::move(shared->on_done);
  shared->on_done = [&](const JobSummary& s) {
    if (on_done) on_done(s);
    std::lock_guard<std::mutex> lock(mutex);
    summary = s;
    finished = true;
    done.notify_all();
  };
  submit(shared);
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return finished; });
  return summary;
}

std::vector<std::vector<float>> Engine::embed(const std::vector<std::vector<int32_t>>& inputs, Pooling pooling,
                                              std::shared_ptr<const Adapter> adapter, std::function<bool()> abandoned) {
  std::mutex mutex;
  std::condition_variable done;
  size_t left = inputs.size();
  std::vector<JobSummary> summaries(inputs.size());
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  // Set on this thread, read by the jobs on the engine's as they reach their slots.
  auto gone = std::make_shared<std::atomic<bool>>(false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto job = std::make_shared<GenerationJob>();
    job->prompt = inputs[i];
    job->adapter = adapter;
    job->abandoned = [gone] { return gone->load(); };
    job->embedding = pooling;
    job->on_done = [&, i](const JobSummary& s) {
      std::lock_guard<std::mutex> lock(mutex);
      summaries[i] = s;
      if (--left == 0) done.notify_all();
    };
    jobs.push_back(std::move(job));
  }
  // Queued together, so that free slots of a lane take them all into one pass.
  impl_->enqueue(jobs);
  {
    std::unique_lock<std::mutex> lock(mutex);
    while (!done.wait_for(lock, std::chrono::milliseconds(50), [&] { return left == 0; }))
      if (abandoned && !gone->load()) {
        lock.unlock();
        if (abandoned()) gone->store(true);
        lock.lock();
      }
  }
  std::vector<std::vector<float>> vectors;
  for (size_t i = 0; i < summaries.size(); ++i) {
    JobSummary& s = summaries[i];
    if (!s.error.empty()) fail("input ", i, ": ", s.error);
    if (s.stop == StopReason::cancelled) fail("input ", i, ": cancelled (the client left)");
    vectors.push_back(std::move(s.embedding));
  }
  return vectors;
}

void Engine::check_prompt_fits(int64_t prompt_tokens) const { orchard::check_prompt_fits(prompt_tokens, impl_->n_ctx); }

// A slot still taken may be running a job, or may have just finished one (its lane frees it at
// the top of its next round): either way it forgets once it is free, before any job is placed.
void Engine::clear_cache() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& s : impl_->slots) {
    if (s->occupied) s->forget = true;
    else s->cached.clear(), s->draft_cached.clear(), s->logits_kept = false;
  }
}

int64_t Engine::n_ctx() const { return impl_->n_ctx; }
int Engine::slots() const { return static_cast<int>(impl_->slots.size()); }
int Engine::lanes() const { return static_cast<int>(impl_->lanes.size()); }
const Model& Engine::model() const { return *impl_->model; }
const Tokenizer& Engine::tokenizer() const { return *impl_->tokenizer; }
std::shared_ptr<const Tokenizer> Engine::shared_tokenizer() const { return impl_->tokenizer; }

FlashStats Engine::flash_stats() const {
  FlashStats total;
  for (const auto& lane : impl_->lanes) {
    const FlashStats s = lane->transformer->flash_stats();
    if (!s.active) continue;
    const uint64_t bytes_read = total.bytes_read + s.bytes_read;
    const double io_wait = total.io_wait_s + s.io_wait_s, compute = total.compute_s + s.compute_s;
    const int64_t passes = total.passes + s.passes, tokens = total.tokens + s.tokens;
    total = s;
    total.bytes_read = bytes_read, total.io_wait_s = io_wait, total.compute_s = compute;
    total.passes = passes, total.tokens = tokens;
  }
  return total;
}

}  // namespace orchard
