// StreamOptions::prompt_logprobs_last: scoring only a prompt's tail (the hybrid router's `pre`
// mode) gives the same steps as scoring the whole prompt, computes logits for those rows only,
// may start from a cached prefix, and leaves the prompt cached for the generating job after it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "golden.h"
#include "model/transformer.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct CountingObserver : EngineObserver {
  std::atomic<int64_t> prefilled{0};
  void on_prefill(int64_t n) override { prefilled += n; }
};

struct Outcome {
  std::vector<TokenStep> prompt_steps;
  std::vector<int32_t> generated;
  JobSummary summary;
};

// A greedy job; `last` < 0: no prompt logprobs.
Outcome run_job(Engine& engine, const std::vector<int32_t>& prompt, int64_t last, int64_t max_tokens, int top = 2) {
  GenerationJob job;
  job.prompt = prompt;
  job.options.sampling.temperature = 0.0f;
  job.options.max_tokens = max_tokens;
  if (last >= 0) {
    job.options.prompt_logprobs = top;
    job.options.prompt_logprobs_last = last;
  }
  Outcome out;
  job.on_step = [&](const TokenStep& step) {
    if (step.prompt) {
      EXPECT_TRUE(out.generated.empty()) << "a prompt step after a generated token";
      out.prompt_steps.push_back(step);
    } else if (step.token >= 0) {
      out.generated.push_back(step.token);
    }
    return true;
  };
  out.summary = engine.run(std::move(job));
  EXPECT_TRUE(out.summary.error.empty()) << out.summary.error;
  return out;
}

void expect_same_step(const TokenStep& a, const TokenStep& b) {
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.chosen.token, b.chosen.token);
  EXPECT_EQ(a.chosen.logprob, b.chosen.logprob) << "token " << a.token;  // bitwise
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) {
    EXPECT_EQ(a.top[i].token, b.top[i].token);
    EXPECT_EQ(a.top[i].logprob, b.top[i].logprob);
  }
}

// The windowed job's steps must be the full job's last ones.
void expect_tail(const std::vector<TokenStep>& full, const std::vector<TokenStep>& window, size_t expected) {
  ASSERT_EQ(window.size(), expected);
  ASSERT_GE(full.size(), expected);
  const size_t offset = full.size() - expected;
  for (size_t i = 0; i < expected; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    expect_same_step(full[offset + i], window[i]);
  }
}

std::shared_ptr<const Model> stories(KernelChoice kernels) {
  return Model::load(test::source_path("models/stories260K/stories260K.gguf"), {.kernels = kernels});
}

std::vector<int32_t> story_prompt(const Tokenizer& tokenizer) {
  return tokenizer.encode(
      "Once upon a time, there was a little girl named Lily. She loved to play in the park with her big red "
      "ball. One day, she saw a small dog sitting under a tree. The dog looked sad and hungry. Lily wanted",
      true);
}

// The transformer's last-k-rows logits are the last k rows of every row's logits, in a batch
// whose other entry asks for its last row only (the rows are packed in entry order).
TEST(PromptLogprobsWindow, TransformerLogitRowsAreTheLastRowsOfAllLogits) {
  auto model = Model::load(test::shared_path("golden/qwen2-f32.gguf"), {.kernels = KernelChoice::reference});
  const Kernels& kernels = select_kernels(KernelChoice::reference);
  const int64_t vocab = model->config().n_vocab;
  const std::vector<int32_t> a = {5, 17, 300, 999, 12, 7, 64, 1000}, b = {3, 3, 900, 41, 2};
  Transformer all(model->impl(), kernels, 64, 1, 2), some(model->impl(), kernels, 64, 1, 2);
  const SequenceTokens full_batch[] = {{.sequence = 0, .start = 0, .tokens = a, .all_logits = true},
                                       {.sequence = 1, .start = 0, .tokens = b, .all_logits = true}};
  std::vector<float> full((a.size() + b.size()) * vocab);
  all.forward(full_batch, full.data());
  const SequenceTokens window_batch[] = {{.sequence = 0, .start = 0, .tokens = a, .logit_rows = 3},
                                         {.sequence = 1, .start = 0, .tokens = b}};
  std::vector<float> window(4 * vocab);
  some.forward(window_batch, window.data());
  // a's rows 5, 6, 7 and b's row 4, which sit at rows 5, 6, 7 and 8 + 4 of the full logits.
  const int64_t expected_rows[] = {5, 6, 7, 12};
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t v = 0; v < vocab; ++v)
      ASSERT_EQ(window[r * vocab + v], full[expected_rows[r] * vocab + v]) << "row " << r << " vocab " << v;

  // Zero rows, or more rows than tokens, is a caller's mistake, refused before the pass.
  const SequenceTokens none[] = {{.sequence = 0, .start = 0, .tokens = a, .logit_rows = 0}};
  const SequenceTokens too_many[] = {{.sequence = 0, .start = 0, .tokens = a, .logit_rows = 9}};
  EXPECT_THROW(some.forward(none, window.data()), Error);
  EXPECT_THROW(some.forward(too_many, window.data()), Error);
}

// Against the float64 oracle: token i's logprob is log_softmax(reference logits of position
// i - 1)[token i], whatever the window.
TEST(PromptLogprobsWindow, StepsMatchTheGoldenReferenceLogits) {
  auto model = Model::load(test::shared_path("golden/qwen2-f32.gguf"), {.kernels = KernelChoice::reference});
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> prompt = test::golden_sequence("long");
  const std::vector<float> reference = test::read_f32_file(test::shared_path("golden/qwen2-f32.long.ref.f32"));
  const size_t n = prompt.size(), vocab = static_cast<size_t>(model->config().n_vocab);
  ASSERT_EQ(reference.size(), n * vocab);
  auto oracle = [&](size_t i) {  // logprob of prompt token i (i >= 1), in double
    const float* row = &reference[(i - 1) * vocab];
    const double top = *std::max_element(row, row + vocab);
    double z = 0;
    for (size_t v = 0; v < vocab; ++v) z += std::exp(double(row[v]) - top);
    return double(row[prompt[i]]) - top - std::log(z);
  };
  Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 1});
  for (int64_t last : {int64_t{1}, int64_t{10}, int64_t(n - 1), int64_t(n), int64_t(n + 50)}) {
    SCOPED_TRACE("prompt_logprobs_last " + std::to_string(last));
    engine.clear_cache();
    const Outcome o = run_job(engine, prompt, last, 0);
    const size_t scored = std::min(static_cast<size_t>(last), n - 1);
    ASSERT_EQ(o.prompt_steps.size(), scored);
    EXPECT_EQ(o.summary.stop, StopReason::max_tokens);
    EXPECT_EQ(o.summary.completion_tokens, 0);
    for (size_t k = 0; k < scored; ++k) {
      const size_t i = n - scored + k;
      EXPECT_EQ(o.prompt_steps[k].token, prompt[i]);
      // A float32 forward lands around KL 1e-10 from this oracle (shared/README.md); one logprob
      // of a 1024-entry softmax then differs by float32 rounding of logits of magnitude ~10,
      // ~1e-6; 1e-4 leaves room for that and still catches a row off by one position.
      EXPECT_NEAR(o.prompt_steps[k].chosen.logprob, oracle(i), 1e-4) << "prompt token " << i;
    }
  }
}

// On the reference kernels a row's logits do not depend on which other rows a pass computes:
// the window's steps are bitwise the full job's last ones, for awkward windows too, and the
// generated tokens are the same.
TEST(PromptLogprobsWindow, WindowedStepsAreTheFullJobsLastSteps) {
  auto model = stories(KernelChoice::reference);
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> prompt = story_prompt(*tokenizer);
  const size_t n = prompt.size();
  ASSERT_GT(n, 40u);
  Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1});
  const Outcome full = run_job(engine, prompt, 0, 6, 3);
  ASSERT_EQ(full.prompt_steps.size(), n - 1);  // 0: every prompt token but the first, as before
  ASSERT_EQ(full.generated.size(), 6u);
  for (size_t i = 0; i + 1 < n; ++i) ASSERT_EQ(full.prompt_steps[i].token, prompt[i + 1]);
  const int64_t m = static_cast<int64_t>(n);
  for (int64_t last : {int64_t{1}, int64_t{2}, int64_t{17}, m - 2, m - 1, m, m + 3}) {
    SCOPED_TRACE("prompt_logprobs_last " + std::to_string(last));
    engine.clear_cache();
    const Outcome o = run_job(engine, prompt, last, 6, 3);
    expect_tail(full.prompt_steps, o.prompt_steps, std::min(static_cast<size_t>(last), n - 1));
    EXPECT_EQ(o.generated, full.generated);
    EXPECT_EQ(o.summary.cached_prompt_tokens, 0);
  }
  // A one-token prompt has nothing to score, whatever the window.
  engine.clear_cache();
  const Outcome one = run_job(engine, {prompt[0]}, 5, 2);
  EXPECT_TRUE(one.prompt_steps.empty());
  EXPECT_EQ(one.generated.size(), 2u);
}

// A slot holding the whole prompt (and more) is reused only up to the first position whose
// logits the window needs; the steps stay those of a fresh full job.
TEST(PromptLogprobsWindow, ACachedPrefixLongerThanTheWindowAllowsIsCutBack) {
  auto model = stories(KernelChoice::reference);
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> prompt = story_prompt(*tokenizer);
  const int64_t n = static_cast<int64_t>(prompt.size());
  Engine fresh(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1});
  const Outcome full = run_job(fresh, prompt, 0, 4, 3);

  CountingObserver observer;
  Engine engine(model, tokenizer,
                {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1, .observer = &observer});
  const Outcome warm = run_job(engine, prompt, -1, 4);  // caches the prompt and 3 generated tokens
  EXPECT_EQ(warm.generated, full.generated);
  for (int64_t last : {int64_t{1}, int64_t{5}, int64_t{30}}) {
    SCOPED_TRACE("prompt_logprobs_last " + std::to_string(last));
    observer.prefilled = 0;
    const Outcome o = run_job(engine, prompt, last, 4, 3);
    // Positions n - 1 - last .. n - 1 give logits, so n - 1 - last tokens come from the cache.
    EXPECT_EQ(o.summary.cached_prompt_tokens, n - 1 - last);
    EXPECT_EQ(observer.prefilled, last + 1);
    expect_tail(full.prompt_steps, o.prompt_steps, static_cast<size_t>(last));
    EXPECT_EQ(o.generated, full.generated);
  }
  // A prompt that shares only a shorter prefix with the cache reuses that prefix.
  std::vector<int32_t> other(prompt.begin(), prompt.begin() + 20);
  const std::vector<int32_t> tail = tokenizer->encode(" the cat ran home to its mother and slept", false);
  other.insert(other.end(), tail.begin(), tail.end());
  Engine other_fresh(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1});
  const Outcome other_full = run_job(other_fresh, other, 0, 3, 3);
  const Outcome o = run_job(engine, other, 5, 3, 3);
  EXPECT_EQ(o.summary.cached_prompt_tokens, 20);
  expect_tail(other_full.prompt_steps, o.prompt_steps, 5);
  EXPECT_EQ(o.generated, other_full.generated);
  // The whole-prompt default still prefills everything, whatever the cache holds.
  const Outcome whole = run_job(engine, other, 0, 3, 3);
  EXPECT_EQ(whole.summary.cached_prompt_tokens, 0);
  expect_tail(other_full.prompt_steps, whole.prompt_steps, other.size() - 1);
}

// The router's pre mode: a scoring job (max_tokens 0) then the generating job on the same prompt
// in one slot. The second prefills nothing: it picks its first token from the logits the scoring
// pass left, and generates what a fresh engine does.
TEST(PromptLogprobsWindow, AScoringJobLeavesThePromptCachedForTheGeneratingJob) {
  for (KernelChoice kernels : {KernelChoice::reference, KernelChoice::fast}) {
    SCOPED_TRACE(kernels == KernelChoice::reference ? "reference kernels" : "fast kernels");
    auto model = stories(kernels);
    auto tokenizer = load_model_tokenizer(*model);
    const std::vector<int32_t> prompt = story_prompt(*tokenizer);
    const int64_t n = static_cast<int64_t>(prompt.size());
    Engine fresh(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = kernels, .n_threads = 1});
    const Outcome alone = run_job(fresh, prompt, -1, 16);

    CountingObserver observer;
    Engine engine(model, tokenizer,
                  {.slots = 1, .n_ctx = 256, .kernels = kernels, .n_threads = 1, .observer = &observer});
    const Outcome scoring = run_job(engine, prompt, 16, 0, 0);
    EXPECT_EQ(scoring.prompt_steps.size(), 16u);
    EXPECT_TRUE(scoring.generated.empty());
    EXPECT_EQ(scoring.summary.stop, StopReason::max_tokens);
    EXPECT_EQ(observer.prefilled, n);
    const Outcome generating = run_job(engine, prompt, -1, 16);
    EXPECT_EQ(generating.summary.cached_prompt_tokens, n);
    EXPECT_EQ(observer.prefilled, n);  // not one token more
    // The router's scoring job picks one greedy token too (its next-token features): the row it
    // was picked from is kept as it was before the sampler saw it.
    Engine again(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = kernels, .n_threads = 1});
    const Outcome one = run_job(again, prompt, 16, 1, 2);
    ASSERT_EQ(one.generated.size(), 1u);
    EXPECT_EQ(one.generated[0], alone.generated[0]);
    const Outcome after_one = run_job(again, prompt, -1, 16);
    EXPECT_EQ(after_one.summary.cached_prompt_tokens, n);
    EXPECT_EQ(after_one.generated, alone.generated);
    // The first token comes from the scoring pass's last row, which a fresh engine computes in
    // its own n-row prefill; on the fast kernels the output matmul's row count (k rows instead of
    // 1) is the only difference, bitwise the same on this model (see the fast-kernel test).
    EXPECT_EQ(generating.generated, alone.generated);
  }
}

// The kept logits serve exactly one job whose prompt is exactly the cache, and nothing after
// the cache changed or was cleared.
TEST(PromptLogprobsWindow, KeptLogitsServeOnlyTheSamePromptOnce) {
  auto model = stories(KernelChoice::reference);
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> prompt = story_prompt(*tokenizer);
  const int64_t n = static_cast<int64_t>(prompt.size());
  Engine fresh(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1});
  const Outcome alone = run_job(fresh, prompt, -1, 1);
  const Outcome full = run_job(fresh, prompt, 0, 0, 2);

  Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1});
  run_job(engine, prompt, 8, 0);
  // A job that asks for prompt logprobs needs its rows computed: the window rule applies.
  const Outcome rescoring = run_job(engine, prompt, 3, 0, 2);
  EXPECT_EQ(rescoring.summary.cached_prompt_tokens, n - 4);
  expect_tail(full.prompt_steps, rescoring.prompt_steps, 3);
  // That scoring job kept its own logits: the generating job uses them...
  const Outcome first = run_job(engine, prompt, -1, 1);
  EXPECT_EQ(first.summary.cached_prompt_tokens, n);
  EXPECT_EQ(first.generated, alone.generated);
  // ...and the same job again finds the prompt cached but its logits sampled from: it recomputes
  // the last prompt token.
  const Outcome again = run_job(engine, prompt, -1, 1);
  EXPECT_EQ(again.summary.cached_prompt_tokens, n - 1);
  EXPECT_EQ(again.generated, alone.generated);

  // A shorter prompt (a prefix of the cache) and a longer one take the ordinary path.
  run_job(engine, prompt, 8, 0);
  const std::vector<int32_t> shorter(prompt.begin(), prompt.end() - 3);
  EXPECT_EQ(run_job(engine, shorter, -1, 1).summary.cached_prompt_tokens, n - 4);
  run_job(engine, prompt, 8, 0);
  std::vector<int32_t> longer = prompt;
  longer.push_back(prompt[5]);
  EXPECT_EQ(run_job(engine, longer, -1, 1).summary.cached_prompt_tokens, n);
  // clear_cache forgets them with the cache.
  run_job(engine, prompt, 8, 0);
  engine.clear_cache();
  EXPECT_EQ(run_job(engine, prompt, -1, 1).summary.cached_prompt_tokens, 0);

  // Without share_prefix nothing is kept.
  Engine isolated(
      model, tokenizer,
      {.slots = 1, .n_ctx = 256, .kernels = KernelChoice::reference, .n_threads = 1, .share_prefix = false});
  run_job(isolated, prompt, 8, 0);
  const Outcome private_job = run_job(isolated, prompt, -1, 1);
  EXPECT_EQ(private_job.summary.cached_prompt_tokens, 0);
  EXPECT_EQ(private_job.generated, alone.generated);
}

// On the fast kernels the window's rows go through the same n-row pass as the full job's, with
// fewer rows in the output matmul only.
// On the fast kernels the window's rows go through the same n-row pass as the full job's; only
// the output matmul has fewer rows. A kernel that tiles rows differently may sum a dot product
// in another order: a relative 1e-6 or so of logits of magnitude ~10 to 20, so 1e-4 on a logprob
// (observed: bitwise equal on these models). Quantized golden models take the int8-activation
// paths that stories260K's f32 weights do not.
TEST(PromptLogprobsWindow, FastKernelsWindowMatchesTheFullJob) {
  struct Case {
    std::string path;
    bool golden;
  };
  const Case cases[] = {{test::source_path("models/stories260K/stories260K.gguf"), false},
                        {test::shared_path("golden/qwen2-q4_0.gguf"), true},
                        {test::shared_path("golden/qwen2-q8_0.gguf"), true},
                        {test::shared_path("golden/qwen2-q4_k_m.gguf"), true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    auto model = Model::load(c.path, {.kernels = KernelChoice::fast});
    auto tokenizer = load_model_tokenizer(*model);
    const std::vector<int32_t> prompt = c.golden ? test::golden_sequence("long") : story_prompt(*tokenizer);
    const size_t n = prompt.size();
    Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 256, .n_threads = 2});
    const Outcome full = run_job(engine, prompt, 0, 4, 3);
    ASSERT_EQ(full.prompt_steps.size(), n - 1);
    float largest = 0;
    for (int64_t last : {int64_t{1}, int64_t{9}, int64_t(n - 2), int64_t(n - 1)}) {
      SCOPED_TRACE("prompt_logprobs_last " + std::to_string(last));
      engine.clear_cache();
      const Outcome o = run_job(engine, prompt, last, 4, 3);
      const size_t scored = static_cast<size_t>(last), offset = n - 1 - scored;
      ASSERT_EQ(o.prompt_steps.size(), scored);
      for (size_t i = 0; i < scored; ++i) {
        const TokenStep &a = o.prompt_steps[i], &b = full.prompt_steps[offset + i];
        EXPECT_EQ(a.token, b.token);
        EXPECT_NEAR(a.chosen.logprob, b.chosen.logprob, 1e-4);
        largest = std::max(largest, std::abs(a.chosen.logprob - b.chosen.logprob));
      }
      EXPECT_EQ(o.generated, full.generated);
    }
    RecordProperty("largest_logprob_difference", std::to_string(largest));
  }
}

TEST(PromptLogprobsWindow, ANegativeWindowIsAnErrorAndTheEngineGoesOn) {
  auto model = stories(KernelChoice::reference);
  auto tokenizer = load_model_tokenizer(*model);
  Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 64, .kernels = KernelChoice::reference, .n_threads = 1});
  GenerationJob job;
  job.prompt = tokenizer->encode("Once upon a time", true);
  job.options.prompt_logprobs = 0;
  job.options.prompt_logprobs_last = -1;
  job.on_step = [](const TokenStep&) { return true; };
  const JobSummary summary = engine.run(job);
  EXPECT_NE(summary.error.find("prompt_logprobs_last"), std::string::npos) << summary.error;
  EXPECT_EQ(summary.stop, StopReason::cancelled);
  const Outcome after = run_job(engine, tokenizer->encode("Once upon a time", true), 2, 3);
  EXPECT_EQ(after.prompt_steps.size(), 2u);
  EXPECT_EQ(after.generated.size(), 3u);
}

}  // namespace
}  // namespace orchard
