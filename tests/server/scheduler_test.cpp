#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <regex>

#include "runtime/model_tokenizer.h"
#include "server/metrics.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

int64_t counter(const Metrics& metrics, const std::string& name) {
  std::smatch m;
  const std::string text = metrics.render();
  EXPECT_TRUE(std::regex_search(text, m, std::regex("\n" + name + " (\\d+)"))) << name;
  return m.empty() ? -1 : std::stoll(m[1]);
}

// One slot, two jobs: the second waits in the queue while the first runs, and its client has
// left by the time the slot is free. It must end there, with no prefill and no token.
TEST(Scheduler, AJobAbandonedInTheQueueEndsBeforeItsPrefill) {
  auto model = Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Metrics metrics;
  std::mutex mutex;
  std::condition_variable done;
  int finished = 0, abandoned_steps = 0;
  JobSummary abandoned_summary;
  {
    Scheduler scheduler(model, tokenizer, 1, 256, KernelChoice::fast, 1, KvCacheType::automatic, metrics);
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
    scheduler.submit(running);
    scheduler.submit(queued);
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return finished == 2; });
  }
  EXPECT_EQ(abandoned_steps, 0);
  EXPECT_EQ(abandoned_summary.stop, StopReason::cancelled);
  EXPECT_EQ(abandoned_summary.completion_tokens, 0);
  EXPECT_TRUE(abandoned_summary.error.empty()) << abandoned_summary.error;
  EXPECT_EQ(counter(metrics, "orchard_prompt_tokens_total"),
            static_cast<int64_t>(tokenizer->encode("Once upon a time", false).size()));
  EXPECT_EQ(counter(metrics, "orchard_abandoned_requests_total"), 1);
}

}  // namespace
}  // namespace orchard::server
