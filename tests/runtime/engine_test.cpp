#include "orchard/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "orchard/error.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct CountingObserver : EngineObserver {
  std::atomic<int64_t> prefilled{0}, tokens{0}, abandoned{0};
  void on_prefill(int64_t n) override { prefilled += n; }
  void on_token(bool, double) override { ++tokens; }
  void on_abandoned() override { ++abandoned; }
};

StreamOptions greedy(int64_t max_tokens) {
  StreamOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  return o;
}

// One slot, two jobs: the second waits in the queue while the first runs, and its client has
// left by the time the slot is free. It must end there, with no prefill and no token.
TEST(Engine, AJobAbandonedInTheQueueEndsBeforeItsPrefill) {
  auto model = Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  CountingObserver observer;
  std::mutex mutex;
  std::condition_variable done;
  int finished = 0, abandoned_steps = 0;
  JobSummary abandoned_summary;
  {
    Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 256, .n_threads = 1, .observer = &observer});
    auto running = std::make_shared<GenerationJob>();
    running->prompt = tokenizer->encode("Once upon a time", false);
    running->options.max_tokens = 16;
    running->on_step = [](const TokenStep&) { return true; };
    running->on_done = [&](const JobSummary&) {
      std::lock_guard<std::mutex> lock(mutex);
      ++finished;
      done.notify_all();
    };
    auto queued = std::make_shared<GenerationJob>();
    queued->prompt = tokenizer->encode("A different prompt", false);
    queued->options.max_tokens = 16;
    queued->on_step = [&](const TokenStep&) {
      ++abandoned_steps;
      return true;
    };
    queued->abandoned = [] { return true; };
    queued->on_done = [&](const JobSummary& summary) {
      std::lock_guard<std::mutex> lock(mutex);
      abandoned_summary = summary;
      ++finished;
      done.notify_all();
    };
    engine.submit(running);
    engine.submit(queued);
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return finished == 2; });
  }
  EXPECT_EQ(abandoned_steps, 0);
  EXPECT_EQ(abandoned_summary.stop, StopReason::cancelled);
  EXPECT_EQ(abandoned_summary.completion_tokens, 0);
  EXPECT_TRUE(abandoned_summary.error.empty()) << abandoned_summary.error;
  EXPECT_EQ(observer.prefilled, static_cast<int64_t>(tokenizer->encode("Once upon a time", false).size()));
  EXPECT_EQ(observer.abandoned, 1);
}

// With the reference kernels a sequence's logits do not depend on its batch: four jobs decoded
// together in one engine give each the text it gets alone in a session, and llama2.c's text.
TEST(Engine, BatchedJobsGiveEachTheTextItGetsAlone) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"), {.kernels = KernelChoice::reference});
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<std::string> prompts = {"Once upon a time", "The dog", "Lily and Tom", "One day, a little"};
  std::vector<std::string> alone;
  for (const std::string& p : prompts) {
    Session session(model, tokenizer, {.n_ctx = 128, .kernels = KernelChoice::reference});
    std::string text;
    session.reply(tokenizer->encode(p, true), greedy(24), [&](std::string_view t) { text += t; return true; });
    alone.push_back(text);
  }
  Engine engine(model, tokenizer, {.slots = 4, .n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 1});
  ASSERT_EQ(engine.lanes(), 1);  // all four in one batch
  std::vector<std::string> together(prompts.size());
  std::mutex mutex;
  std::condition_variable done;
  size_t finished = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto job = std::make_shared<GenerationJob>();
    job->prompt = tokenizer->encode(prompts[i], true);
    job->options = greedy(24);
    job->on_step = [&, i](const TokenStep& step) {
      together[i] += step.text;
      return true;
    };
    job->on_done = [&](const JobSummary& s) {
      EXPECT_EQ(s.stop, StopReason::max_tokens);
      EXPECT_EQ(s.completion_tokens, 24);
      std::lock_guard<std::mutex> lock(mutex);
      ++finished;
      done.notify_all();
    };
    engine.submit(job);
  }
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return finished == prompts.size(); });
  EXPECT_EQ(together, alone);
  EXPECT_FALSE(alone[0].empty());
}

TEST(Engine, RunReportsBadPromptsAsErrorsAndTheEngineGoesOn) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Engine engine(model, tokenizer, {.n_ctx = 16});
  GenerationJob too_long;
  too_long.prompt.assign(16, 1);
  too_long.on_step = [](const TokenStep&) { return true; };
  EXPECT_EQ(engine.run(too_long).error, "the prompt has 16 tokens; the context holds 16");
  EXPECT_THROW(engine.check_prompt_fits(16), Error);
  EXPECT_NO_THROW(engine.check_prompt_fits(15));
  GenerationJob bad_id;
  bad_id.prompt = {1, 100000};
  bad_id.on_step = [](const TokenStep&) { return true; };
  EXPECT_EQ(engine.run(bad_id).error, "token id 100000 is outside the vocabulary");
  GenerationJob empty;
  empty.on_step = [](const TokenStep&) { return true; };
  EXPECT_EQ(engine.run(empty).error, "the prompt has no tokens");
  // Without max_tokens the context is the budget: 15 prompt tokens leave one.
  GenerationJob fills;
  fills.prompt.assign(15, 1);
  fills.options = greedy(-1);
  int64_t steps = 0;
  fills.on_step = [&](const TokenStep& step) { steps += step.token >= 0; return true; };
  const JobSummary s = engine.run(fills);
  EXPECT_TRUE(s.error.empty()) << s.error;
  EXPECT_LE(s.completion_tokens, 1);
  EXPECT_THROW(Engine(model, tokenizer, {.slots = 0}), Error);
  EXPECT_THROW(Engine(model, tokenizer, {.n_ctx = -1}), Error);
}

}  // namespace
}  // namespace orchard
