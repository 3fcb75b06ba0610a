// The engine: one front door for generation. It owns a model's slots (each a KV cache that keeps
// its last tokens, so a follow-up prompt prefills only what is new), runs every active job in
// one batched forward pass per step (continuous batching), and turns each job's logits into a
// stream of steps (sampling, constraints, stop strings, logprobs). `orchard run`, `orchard chat`,
// `orchard serve`, Session and the C API all generate through it.
//
// A job goes in (prompt tokens and options), steps come out on the engine's threads (token, text,
// logprobs, finish reason), and a summary ends it (usage, error). With speculative decoding
// (SpeculationOptions) a step verifies a slot's drafted tokens in the same batched pass and hands
// the kept ones to the job one step each (docs/architecture.md, "Speculative decoding").
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"

namespace orchard {

// The tokenizer that belongs to a model: `override_path` when given (a tokenizer.json, a folder, a
// .gguf or a llama2.c tokenizer.bin); otherwise the GGUF's own vocabulary, or tokenizer.json beside
// a Hugging Face folder's weights, or tokenizer.bin beside a llama2.c checkpoint. Throws
// orchard::Error saying what to pass when the model has none.
std::shared_ptr<const Tokenizer> load_model_tokenizer(const Model& model, const std::string& override_path = "");

// A rule on which tokens may come next (JSON Schema constrained decoding:
// runtime/logit_constraint.h).
class LogitConstraint;

// Choosing the next token: penalties, then top-k, top-p and min-p on the untempered
// distribution, then temperature, then a seeded draw. Temperature 0 is greedy.
struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax, lowest id on ties)
  int32_t top_k = 40;        // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp's: divides positive logits, multiplies negative)
  int32_t repeat_last_n = 64;   // how many recent tokens (prompt included) the repeat penalty looks at
  // OpenAI's: each generated token's logit loses frequency_penalty per earlier occurrence in the
  // generated text, and presence_penalty once if it occurred at all. 0: off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  // Whose exp weighs the draw: the model's choice, so that `--kernels reference` runs no fast kernel.
  KernelChoice kernels = KernelChoice::fast;
};

enum class StopReason { none, end_of_sequence, stop_string, max_tokens, context_full, cancelled, constraint_complete };

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct StreamOptions {
  SamplingParams sampling;
  int64_t max_tokens = -1;  // < 0: as many as the context leaves
  std::vector<std::string> stop;
  std::shared_ptr<LogitConstraint> constraint;  // e.g. JSON-schema constrained decoding
  int top_logprobs = -1;  // < 0: no logprobs; 0: the chosen token's only
  // >= 0: the logprobs of the prompt's own tokens (from its second on: the first has no position
  // before it) with this many top ones, handed to on_step before the first generated token as
  // steps with `prompt` set, in prompt order.
  int prompt_logprobs = -1;
  // With prompt_logprobs >= 0, how many of the prompt's last tokens are scored. For a prompt of
  // n tokens and a value N > 0, the steps are those of prompt tokens max(1, n - N) .. n - 1
  // (0-based), min(N, n - 1) of them: token i's logprobs come from the logits of position i - 1.
  // Only those positions (and the last, which picks the first generated token) get logits, and a
  // slot's cached prefix is reused up to the first of them (which is recomputed), so scoring a
  // long prompt's tail costs its prefill and N more rows of the output matrix. 0: every prompt
  // token (n - 1 steps), and the whole prompt is prefilled. A job of max_tokens 0 (scoring)
  // leaves its prompt in the slot's cache with the last position's logits: a next job on exactly
  // that prompt, without prompt logprobs, prefills nothing (cached_prompt_tokens = n) and picks
  // its first token from them.
  int64_t prompt_logprobs_last = 0;
};

// One step of a job's generation.
struct TokenStep {
  int32_t token = -1;         // -1 when the step ended generation without a token
  std::string text;           // released text, whole UTF-8 characters (may be empty)
  StopReason stop = StopReason::none;
  TokenLogprob chosen{};      // when logprobs are asked for
  std::vector<TokenLogprob> top;
  bool prompt = false;        // a prompt token's logprobs (StreamOptions::prompt_logprobs), not generated
};

struct JobSummary {
  StopReason stop = StopReason::none;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // taken from a slot's cache instead of prefilled
  // Speculative decoding: draft tokens verified, and how many of them were kept.
  int64_t drafted_tokens = 0, accepted_tokens = 0;
  std::string error;  // set when the job failed inside the engine (a prompt that does not fit, ...)
  // An embedding job's vector (GenerationJob::embedding): [model dim], unit length (all zeros
  // only if the pooled state was zero). Empty for a generation job, or one that failed.
  std::vector<float> embedding;
};

// Embeddings: how the final hidden states of a prompt's tokens, after the output norm (the
// vectors the output matrix multiplies), become one vector, which is then L2-normalised.
enum class Pooling {
  last,  // the last token's: in a causal model the only one that has seen every token (Qwen3-Embedding's)
  mean,  // the mean over the prompt's tokens (the whole prompt is prefilled: no cached prefix)
};

class Adapter;

struct GenerationJob {
  std::vector<int32_t> prompt;
  StreamOptions options;
  // A LoRA adapter of the engine's model (orchard/adapter.h) for this job; null: the base. Jobs
  // with different adapters share the batched passes.
  std::shared_ptr<const Adapter> adapter;
  // Called on an engine thread for every step; returning false cancels the job (the client left).
  std::function<bool(const TokenStep&)> on_step;
  // Asked when the job reaches its slot: true when the client left while the job was queued (the
  // job then ends there, before its prefill). May be empty.
  std::function<bool()> abandoned;
  // Set: an embedding job, not a generation. It prefills its prompt in the batched passes beside
  // the other jobs (its rows skip the output matmul) and ends without sampling, with
  // StopReason::none and the pooled vector in JobSummary::embedding. on_step is never called
  // (may be empty) and `options` are ignored. The prompt may fill the whole context. Its keys and
  // values stay in the slot's cache like any prompt's, so a later job on the same prefix reuses them.
  std::optional<Pooling> embedding;
  // Called once, last, on an engine thread (or on the caller's, for a job refused at submit).
  std::function<void(const JobSummary&)> on_done;
};

// What the engine reports as it runs, for metrics; called on its threads.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void on_queue_depth(int64_t jobs) {}
  virtual void on_active(int64_t jobs) {}
  virtual void on_prefill(int64_t tokens) {}  // prompt tokens that go through the model
  // A generated token; seconds since the job's submission (the first) or its previous token.
  virtual void on_token(bool first, double seconds) {}
  virtual void on_abandoned() {}  // a job its client cancelled
  // A batched forward pass of `sequences` jobs, of which `adapters` distinct LoRA adapters (the
  // base counts as none): requests for different adapters share passes.
  virtual void on_pass(int64_t sequences, int64_t adapters) {}
  // One step of a lane: picking the next token of each of `picked` decoding jobs (sampling, on
  // the lane's threads) took `pick_seconds`, then the forward pass of `sequences` jobs and
  // `tokens` tokens took `pass_seconds` (0 0 when no job continued). What a step costs beyond
  // the two is the jobs' own (their on_step callbacks: detokenizing, a server's writes).
  virtual void on_step(int64_t picked, int64_t sequences, int64_t tokens, double pick_seconds, double pass_seconds) {}
  // Speculative decoding verified `drafted` tokens of one job's draft and kept `accepted`.
  virtual void on_speculation(int64_t drafted, int64_t accepted) {}
};

// Speculative decoding: a cheap proposer drafts a few tokens, and one batched pass of the model
// checks them all, reading the weights once for several tokens. The output is the model's own:
// greedy decoding gives exactly the tokens it gives without speculation (the kernels are
// batch-invariant: a row's logits do not depend on how many rows share the pass), and sampling
// keeps a draft by exact rejection sampling, so the text has the model's distribution.
enum class SpeculationMode {
  off,
  ngram,        // prompt lookup: the tokens that followed the latest earlier occurrence of the context's last n-gram
  draft_model,  // a smaller model of the same vocabulary drafts them, one token at a time
};

struct SpeculationOptions {
  SpeculationMode mode = SpeculationMode::off;
  std::shared_ptr<const Model> draft_model;  // SpeculationMode::draft_model: same tokenizer (checked)
  int draft_max = 4;  // tokens drafted per step, at most
  int draft_min = 0;  // a shorter draft is not verified (the step decodes one token)
  int ngram_max = 3;  // ngram: the context's last ngram_max tokens are looked up first, then shorter ones
  int ngram_min = 1;
  // For tests only: keep every draft, the wrong rule that the sampling tests must catch.
  bool accept_every_draft_for_testing = false;
};

struct EngineOptions {
  int slots = 1;      // jobs decoded together
  int64_t n_ctx = 0;  // per slot; 0: the model's trained context length (capped at 4096)
  KernelChoice kernels = KernelChoice::fast;
  int n_threads = 0;  // forward-pass threads; 0: chosen from the model's size (engine.cpp)
  KvCacheType kv_cache = KvCacheType::automatic;
  EngineObserver* observer = nullptr;  // must outlive the engine
  // false: a job shares nothing with the jobs before it. It starts from an empty cache, and its
  // keys and values are zeroed when it ends, so neither another job's timing (a reused prefix is
  // faster) nor the memory of a slot tells anything of its prompt (the private cloud node).
  bool share_prefix = true;
  SpeculationOptions speculation;
};

class Engine {
 public:
  // Throws orchard::Error when the options cannot work (no slot, a context that does not fit in
  // memory, ...).
  Engine(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
         const EngineOptions& options = {});
  // Jobs still queued or running end with StopReason::cancelled and an error.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a job; thread-safe. It runs in the free slot whose cache shares the longest prefix
  // with its prompt.
  void submit(std::shared_ptr<GenerationJob> job);
  // Runs one job to its end and returns its summary; `job.on_step` is called on an engine thread.
  JobSummary run(GenerationJob job);
  // Embeds each input (token ids) as an embedding job, all submitted at once so that they share
  // passes, and waits for them all: one unit vector [model dim] per input, in order. `abandoned`
  // (may be empty) is asked on the calling thread while it waits, about every 50 ms (a server's
  // check of its client, which only that thread can make): once true, the inputs not yet in a
  // slot end there, before their prefill. Throws orchard::Error with the first
  // failed job's error (an empty input, a token outside the vocabulary, more tokens than n_ctx(),
  // the client gone).
  std::vector<std::vector<float>> embed(const std::vector<std::vector<int32_t>>& inputs, Pooling pooling,
                                        std::shared_ptr<const Adapter> adapter = nullptr,
                                        std::function<bool()> abandoned = {});

  // Throws orchard::Error when `prompt_tokens` leave no room to generate in a slot's context.
  void check_prompt_fits(int64_t prompt_tokens) const;
  // Forgets what the slots' caches hold (a slot running a job forgets when the job ends), so the
  // next job prefills its whole prompt.
  void clear_cache();

  int64_t n_ctx() const;
  int slots() const;
  int lanes() const;  // groups of slots, each stepped by its own threads (engine.cpp)
  const Model& model() const;
  const Tokenizer& tokenizer() const;
  std::shared_ptr<const Tokenizer> shared_tokenizer() const;
  // Limited-memory mode's figures, summed over the lanes; meant for when no job runs.
  FlashStats flash_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the end-of-sequence token
  StopReason stop = StopReason::none;
  int64_t reused_tokens = 0;    // prompt tokens taken from the cache
  JobSummary summary;           // the engine's (usage, speculation)
};

// A conversation over an engine of one slot: each turn's prompt is the whole conversation so far,
// and only the tokens after the longest prefix already in the cache are prefilled.
class Session {
 public:
  // `options.slots` is ignored: a session has one.
  Session(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
          EngineOptions options = {});

  // Generates a reply to `prompt` (the full conversation's tokens). `on_text` receives the text in
  // whole UTF-8 characters; returning false, or `cancel` becoming true, stops at the next token.
  GenerateResult reply(std::span<const int32_t> prompt, const StreamOptions& options,
                       const std::function<bool(std::string_view)>& on_text,
                       const std::atomic<bool>* cancel = nullptr);

  // How many prompt tokens the last reply took from the cache instead of prefilling.
  int64_t last_reused_tokens() const { return last_reused_; }
  void reset() { engine_.clear_cache(); }
  // A LoRA adapter (orchard/adapter.h) for the replies from now on; null: the base.
  void set_adapter(std::shared_ptr<const Adapter> adapter) { adapter_ = std::move(adapter); }
  const Tokenizer& tokenizer() const { return engine_.tokenizer(); }
  Engine& engine() { return engine_; }

 private:
  Engine engine_;
  std::shared_ptr<const Adapter> adapter_;
  int64_t last_reused_ = 0;
};

}  // namespace orchard
