// Speculative decoding (issue 20): prompt lookup, exactness of greedy verification against
// decoding without speculation (and against llama2.c's own generations), the sampled token's
// distribution under rejection sampling against sampling without it (a chi-square test that a
// wrong acceptance rule fails), constraints and stop strings, limited-memory mode, bad drafts.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "orchard/adapter.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "temp_dir.h"
#include "train/adapter_io.h"
#include "constraint_test_support.h"
#include "runtime/speculation.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// stories260K.bin with every weight multiplied by (1 + sigma * a normal draw): a draft that
// agrees with the model more or less often as sigma is small or large.
std::shared_ptr<const Model> perturbed_stories(double sigma, uint64_t seed) {
  std::vector<uint8_t> bytes = read_bytes(test::shared_path("models/stories260K/stories260K.bin"));
  constexpr size_t kHeader = 7 * 4;
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  auto uniform = [&] {  // splitmix64: the same draws on every platform
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (static_cast<double>((z ^ (z >> 31)) >> 11) + 0.5) * 0x1.0p-53;
  };
  for (size_t at = kHeader; at + 4 <= bytes.size(); at += 4) {
    float w;
    std::memcpy(&w, bytes.data() + at, 4);
    const double normal = std::sqrt(-2 * std::log(uniform())) * std::cos(2 * M_PI * uniform());
    w = static_cast<float>(w * (1 + sigma * normal));
    std::memcpy(bytes.data() + at, &w, 4);
  }
  return Model::load_from_memory(std::move(bytes), "stories260K-noise-" + std::to_string(sigma));
}

// stories260K.bin cut to its first `layers` layers (llama2.c stores each weight of all layers
// together, so each block is cut), its embedding, final norm and classifier kept.
std::shared_ptr<const Model> truncated_stories(int32_t layers) {
  const std::vector<uint8_t> bytes = read_bytes(test::shared_path("models/stories260K/stories260K.bin"));
  int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof h);
  const int64_t dim = h[0], hidden = h[1], L = h[2], heads = h[3], kv_heads = h[4], vocab = std::abs(h[5]), seq = h[6];
  const int64_t kv_dim = dim / heads * kv_heads, head = dim / heads;
  std::vector<uint8_t> out(bytes.begin(), bytes.begin() + sizeof h);
  reinterpret_cast<int32_t*>(out.data())[2] = layers;
  size_t at = sizeof h;
  auto copy = [&](int64_t floats, int64_t keep) {
    out.insert(out.end(), bytes.begin() + static_cast<ptrdiff_t>(at), bytes.begin() + static_cast<ptrdiff_t>(at + keep * 4));
    at += static_cast<size_t>(floats) * 4;
  };
  auto per_layer = [&](int64_t each) { copy(L * each, layers * each); };
  copy(vocab * dim, vocab * dim);
  per_layer(dim);
  per_layer(dim * dim);
  per_layer(dim * kv_dim);
  per_layer(dim * kv_dim);
  per_layer(dim * dim);
  per_layer(dim);
  per_layer(hidden * dim);
  per_layer(dim * hidden);
  per_layer(hidden * dim);
  copy(dim, dim);
  copy(seq * head, seq * head);
  if (h[5] < 0) copy(vocab * dim, vocab * dim);
  EXPECT_EQ(at, bytes.size());
  return Model::load_from_memory(std::move(out), "stories260K-first-" + std::to_string(layers) + "-layers");
}

struct Generation {
  std::vector<int32_t> tokens;
  std::string text;  // as the steps released it
  JobSummary summary;
};

Generation generate(Engine& engine, const std::vector<int32_t>& prompt, StreamOptions options) {
  Generation g;
  GenerationJob job{.prompt = prompt, .options = std::move(options)};
  job.on_step = [&](const TokenStep& step) {
    if (step.token >= 0 && !step.prompt && step.stop != StopReason::end_of_sequence) g.tokens.push_back(step.token);
    g.text += step.text;
    return true;
  };
  g.summary = engine.run(std::move(job));
  EXPECT_EQ(g.summary.error, "");
  return g;
}

StreamOptions greedy(int64_t max_tokens) {
  StreamOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  return o;
}

TEST(PromptLookup, CopiesWhatFollowedTheLatestEarlierOccurrence) {
  // The suffix [7, 8] occurred at 1 and at 5; the latest is followed by 9, 1.
  const std::vector<int32_t> context = {6, 7, 8, 3, 4, 7, 8, 9, 1, 7, 8};
  EXPECT_EQ(prompt_lookup(context, 4, 3, 1), (std::vector<int32_t>{9, 1, 7, 8}));
  EXPECT_EQ(prompt_lookup(context, 2, 3, 1), (std::vector<int32_t>{9, 1}));
  // A longer suffix is tried first: [1, 7, 8] never occurred before, [7, 8] did.
  EXPECT_EQ(prompt_lookup(context, 1, 2, 2), (std::vector<int32_t>{9}));
  // Only a one-token match ([5] at 0); at least two required: nothing.
  const std::vector<int32_t> once = {5, 2, 3, 4, 5};
  EXPECT_EQ(prompt_lookup(once, 3, 3, 1), (std::vector<int32_t>{2, 3, 4}));
  EXPECT_TRUE(prompt_lookup(once, 3, 3, 2).empty());
  // What follows the match runs to the end of the context at most.
  const std::vector<int32_t> repeat = {4, 4};
  EXPECT_EQ(prompt_lookup(repeat, 4, 3, 1), (std::vector<int32_t>{4}));
  // In a repetition the latest matches end just before the suffix: an earlier one with k tokens
  // after it drafts further. [9, 9, 9] occurs at 1, 2 and 3; only at 1 do four tokens follow.
  const std::vector<int32_t> run = {2, 9, 9, 9, 9, 9, 9, 9};
  EXPECT_EQ(prompt_lookup(run, 4, 3, 1), (std::vector<int32_t>{9, 9, 9, 9}));
  EXPECT_EQ(prompt_lookup(run, 6, 3, 1), (std::vector<int32_t>{9, 9, 9, 9}));  // at most what follows the first
  EXPECT_TRUE(prompt_lookup(std::vector<int32_t>{1}, 4, 3, 1).empty());
}

// Greedy decoding with speculation gives exactly the tokens it gives without, whatever the
// draft: the ones llama2.c's run.c printed (expected_generation.json), on the reference kernels
// and the fast ones.
TEST(Speculation, GreedyIsExactOnStories260K) {
  const nlohmann::json expected =
      nlohmann::json::parse(read_bytes(test::shared_path("models/stories260K/expected_generation.json")));
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.bin"));
  auto tokenizer = load_model_tokenizer(*model, test::shared_path("models/stories260K/tok512.bin"));
  struct Draft {
    std::string name;
    SpeculationOptions options;
  };
  std::vector<Draft> drafts = {
      {"ngram", {.mode = SpeculationMode::ngram}},
      {"noise 0.05", {.mode = SpeculationMode::draft_model, .draft_model = perturbed_stories(0.05, 1)}},
      {"noise 0.5", {.mode = SpeculationMode::draft_model, .draft_model = perturbed_stories(0.5, 2)}},
      {"first 2 layers", {.mode = SpeculationMode::draft_model, .draft_model = truncated_stories(2), .draft_max = 3}},
  };
  for (KernelChoice kernels : {KernelChoice::reference, KernelChoice::fast}) {
    Engine plain(model, tokenizer, {.n_ctx = 256, .kernels = kernels, .n_threads = 1});
    for (Draft& draft : drafts) {
      Engine speculative(model, tokenizer, {.n_ctx = 256, .kernels = kernels, .n_threads = 1, .speculation = draft.options});
      int64_t drafted = 0, accepted = 0;
      for (const auto& c : expected["cases"]) {
        const std::vector<int32_t> prompt = c["prompt_tokens"].get<std::vector<int32_t>>();
        const int64_t n = c["generated_tokens"].get<int64_t>();
        const Generation want = generate(plain, prompt, greedy(n));
        const Generation got = generate(speculative, prompt, greedy(n));
        SCOPED_TRACE(draft.name + (kernels == KernelChoice::fast ? ", fast" : ", reference") + ": " +
                     c["prompt"].get<std::string>());
        EXPECT_EQ(got.tokens, want.tokens);
        EXPECT_EQ(got.text, c["expected_continuation"].get<std::string>());
        EXPECT_EQ(got.summary.completion_tokens, want.summary.completion_tokens);
        drafted += got.summary.drafted_tokens, accepted += got.summary.accepted_tokens;
      }
      // Each draft was used, and kept at least sometimes (else nothing was exercised).
      EXPECT_GT(drafted, 0) << draft.name;
      EXPECT_GT(accepted, 0) << draft.name;
      std::printf("[ stories260K %s, %s ] drafted %lld, accepted %lld (%.0f%%)\n", draft.name.c_str(),
                  kernels == KernelChoice::fast ? "fast" : "reference", (long long)drafted, (long long)accepted,
                  100.0 * static_cast<double>(accepted) / static_cast<double>(std::max<int64_t>(1, drafted)));
    }
  }
}

// 50 random prompts on golden models: the model in one quantization drafts for another, and
// prompt lookup drafts from the (repetitive) output of random weights. The reference kernels
// (plain loops, some twenty times slower) take the first 10 prompts.
TEST(Speculation, GreedyIsExactOnGoldenModels) {
  struct Pair {
    const char* target;
    const char* draft;
  };
  const Pair pairs[] = {{"qwen2-q8_0", "qwen2-q4_0"}, {"llama-f16", "llama-q4_0"}, {"qwen3-f32", "qwen3-q4_0"}};
  uint64_t state = 12345;
  auto next = [&] { return (state = state * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (const Pair& pair : pairs) {
    auto model = Model::load(test::shared_path(std::string("golden/") + pair.target + ".gguf"));
    // The golden models share one vocabulary; the llama GGUFs name a pre-tokenizer Orchard does not read.
    auto tokenizer = load_model_tokenizer(*model, test::shared_path("golden/qwen2-q8_0.gguf"));
    auto draft = Model::load(test::shared_path(std::string("golden/") + pair.draft + ".gguf"));
    for (KernelChoice kernels : {KernelChoice::reference, KernelChoice::fast}) {
      Engine plain(model, tokenizer, {.n_ctx = 128, .kernels = kernels, .n_threads = 1});
      Engine by_draft(model, tokenizer,
                      {.n_ctx = 128, .kernels = kernels, .n_threads = 1,
                       .speculation = {.mode = SpeculationMode::draft_model, .draft_model = draft}});
      Engine by_lookup(model, tokenizer,
                       {.n_ctx = 128, .kernels = kernels, .n_threads = 1, .speculation = {.mode = SpeculationMode::ngram}});
      int64_t drafted = 0, accepted = 0;
      const int prompts = kernels == KernelChoice::reference ? 10 : 50;
      for (int p = 0; p < prompts; ++p) {
        std::vector<int32_t> prompt(2 + next() % 30);
        for (int32_t& t : prompt) t = static_cast<int32_t>(next() % 1021);
        const Generation want = generate(plain, prompt, greedy(24));
        for (Engine* engine : {&by_draft, &by_lookup}) {
          const Generation got = generate(*engine, prompt, greedy(24));
          EXPECT_EQ(got.tokens, want.tokens) << pair.target << " prompt " << p
                                             << (engine == &by_draft ? " (draft model)" : " (prompt lookup)");
          drafted += got.summary.drafted_tokens, accepted += got.summary.accepted_tokens;
        }
      }
      EXPECT_GT(accepted, 0) << pair.target;
      std::printf("[ %s drafted by %s and lookup, %s ] drafted %lld, accepted %lld\n", pair.target, pair.draft,
                  kernels == KernelChoice::fast ? "fast" : "reference", (long long)drafted, (long long)accepted);
    }
  }
}

// Continuous batching with per-slot drafts: 16 jobs on 8 slots of one lane, each with its own
// prompt, drafts of different lengths verified in shared passes beside other slots' prompts and
// drafts; each job's tokens are those it gets alone without speculation.
TEST(Speculation, SlotsDraftAndVerifyInSharedPasses) {
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.bin"));
  auto tokenizer = load_model_tokenizer(*model, test::shared_path("models/stories260K/tok512.bin"));
  Engine plain(model, tokenizer, {.n_ctx = 160, .n_threads = 1});
  struct PassObserver : EngineObserver {
    std::atomic<int64_t> shared{0};
    void on_pass(int64_t sequences, int64_t) override { shared += sequences > 1; }
  } observer;
  for (const SpeculationOptions& speculation :
       {SpeculationOptions{.mode = SpeculationMode::ngram},
        SpeculationOptions{.mode = SpeculationMode::draft_model, .draft_model = perturbed_stories(0.05, 5)}}) {
    Engine batched(model, tokenizer,
                   {.slots = 8, .n_ctx = 160, .n_threads = 1, .observer = &observer, .speculation = speculation});
    ASSERT_EQ(batched.lanes(), 1);
    const char* starts[] = {"Once upon a time", "The cat", "Lily and Ben", "A big dog", "One day, Tom",
                            "The sun was", "Sue had a", "In the park"};
    std::vector<std::vector<int32_t>> prompts, expected;
    for (int i = 0; i < 16; ++i) {
      prompts.push_back(tokenizer->encode(std::string(starts[i % 8]) + (i >= 8 ? " and" : ""), true));
      expected.push_back(generate(plain, prompts.back(), greedy(40 + 7 * i)).tokens);
    }
    std::vector<std::vector<int32_t>> got(16);
    std::mutex mutex;
    std::condition_variable done;
    int finished = 0;
    for (int i = 0; i < 16; ++i) {
      auto job = std::make_shared<GenerationJob>();
      job->prompt = prompts[i];
      job->options = greedy(40 + 7 * i);
      job->on_step = [&, i](const TokenStep& step) {
        if (step.token >= 0 && step.stop != StopReason::end_of_sequence) got[i].push_back(step.token);
        return true;
      };
      job->on_done = [&](const JobSummary& summary) {
        EXPECT_EQ(summary.error, "");
        std::lock_guard<std::mutex> lock(mutex);
        ++finished;
        done.notify_all();
      };
      batched.submit(job);
    }
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return finished == 16; });
    for (int i = 0; i < 16; ++i) EXPECT_EQ(got[i], expected[i]) << "job " << i;
  }
  EXPECT_GT(observer.shared.load(), 0);
}

// The regularized upper incomplete gamma Q(a, x): the chi-square survival function is
// Q(df / 2, x / 2). A series below a + 1, a continued fraction (modified Lentz) above.
double upper_gamma_q(double a, double x) {
  if (x <= 0) return 1;
  const double log_prefix = a * std::log(x) - x - std::lgamma(a);
  if (x < a + 1) {
    double term = 1 / a, sum = term;
    for (int n = 1; n < 1000 && std::fabs(term) > 1e-16 * std::fabs(sum); ++n) sum += term *= x / (a + n);
    return 1 - sum * std::exp(log_prefix);
  }
  double b = x + 1 - a, c = 1e300, d = 1 / b, f = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    d = std::fabs(d) < 1e-300 ? 1e-300 : d;
    c = b + an / c;
    c = std::fabs(c) < 1e-300 ? 1e-300 : c;
    d = 1 / d;
    const double delta = d * c;
    f *= delta;
    if (std::fabs(delta - 1) < 1e-15) break;
  }
  return f * std::exp(log_prefix);
}

TEST(ChiSquare, SurvivalFunctionMatchesKnownQuantiles) {
  // Quantiles from the chi-square tables: P(X > x) for df degrees of freedom.
  EXPECT_NEAR(upper_gamma_q(0.5, 3.841459 / 2), 0.05, 1e-6);   // df 1
  EXPECT_NEAR(upper_gamma_q(5.0, 23.209251 / 2), 0.01, 1e-6);  // df 10
  EXPECT_NEAR(upper_gamma_q(50.0, 149.449252 / 2), 0.001, 1e-6);  // df 100
  EXPECT_NEAR(upper_gamma_q(2.0, 1.0), 2 * std::exp(-1.0), 1e-12);  // df 4: e^-x (1 + x)
}

// Two samples of counts over the same tokens: the p-value of the chi-square test of homogeneity,
// bins whose expected count is under 5 pooled into one (then dropped if still under 5).
double homogeneity_p(const std::map<int32_t, int64_t>& a, const std::map<int32_t, int64_t>& b) {
  double total_a = 0, total_b = 0;
  for (const auto& [t, n] : a) total_a += static_cast<double>(n);
  for (const auto& [t, n] : b) total_b += static_cast<double>(n);
  std::map<int32_t, std::pair<double, double>> bins;
  for (const auto& [t, n] : a) bins[t].first += static_cast<double>(n);
  for (const auto& [t, n] : b) bins[t].second += static_cast<double>(n);
  const double total = total_a + total_b;
  std::vector<std::pair<double, double>> kept;
  std::pair<double, double> pooled{0, 0};
  for (const auto& [t, counts] : bins) {
    const double row = counts.first + counts.second;
    if (row * std::min(total_a, total_b) / total < 5) pooled.first += counts.first, pooled.second += counts.second;
    else kept.push_back(counts);
  }
  if ((pooled.first + pooled.second) * std::min(total_a, total_b) / total >= 5) kept.push_back(pooled);
  if (kept.size() < 2) return 1;
  double chi2 = 0;
  for (const auto& [na, nb] : kept) {
    const double row = na + nb, ea = row * total_a / total, eb = row * total_b / total;
    chi2 += (na - ea) * (na - ea) / ea + (nb - eb) * (nb - eb) / eb;
  }
  return upper_gamma_q(static_cast<double>(kept.size() - 1) / 2, chi2 / 2);
}

// The tokens at generated positions 0, 1 and 2 over `runs` seeded generations at temperature 1.
std::array<std::map<int32_t, int64_t>, 3> sample_positions(std::shared_ptr<const Model> model,
                                                           std::shared_ptr<const Tokenizer> tokenizer,
                                                           const SpeculationOptions& speculation, int runs,
                                                           uint64_t first_seed, SamplingParams sampling) {
  std::array<std::map<int32_t, int64_t>, 3> counts;
  std::mutex mutex;
  Engine engine(model, tokenizer, {.slots = 8, .n_ctx = 64, .n_threads = 2, .speculation = speculation});
  const std::vector<int32_t> prompt = tokenizer->encode("Once upon a time, a little", true);
  std::atomic<int> left{runs};
  std::condition_variable done;
  for (int r = 0; r < runs; ++r) {
    auto job = std::make_shared<GenerationJob>();
    job->prompt = prompt;
    job->options.sampling = sampling;
    job->options.sampling.seed = first_seed + static_cast<uint64_t>(r);
    // Beyond the three positions counted, so that drafts of several tokens are verified.
    job->options.max_tokens = 4;
    auto generated = std::make_shared<int>(0);
    job->on_step = [&, generated](const TokenStep& step) {
      if (step.token >= 0 && *generated < 3) {
        std::lock_guard<std::mutex> lock(mutex);
        ++counts[static_cast<size_t>((*generated)++)][step.token];
      }
      return true;
    };
    job->on_done = [&](const JobSummary&) {
      std::lock_guard<std::mutex> lock(mutex);
      if (--left == 0) done.notify_all();
    };
    engine.submit(job);
  }
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return left == 0; });
  return counts;
}

// Rejection sampling keeps the model's distribution: for each of the first three generated
// positions, the token's distribution over 20,000 seeded runs with a draft that agrees often and
// one that agrees rarely matches 20,000 runs without speculation (chi-square test of
// homogeneity, bins of expected count < 5 pooled, p > 0.001). Accepting every draft, a wrong
// rule, fails the same test (p < 0.001), so the test has the power to see a wrong rule.
TEST(Speculation, SampledTokensKeepTheModelsDistribution) {
#if defined(__SANITIZE_ADDRESS__)
  // Under the sanitizers, which look for memory errors, 5,000 runs each (20,000 took minutes
  // there); the statistical claim is the plain build's, at 20,000.
  constexpr int kRuns = 5000;
#else
  constexpr int kRuns = 20000;
#endif
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.bin"));
  auto tokenizer = load_model_tokenizer(*model, test::shared_path("models/stories260K/tok512.bin"));
  const SamplingParams pure{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
  const auto plain = sample_positions(model, tokenizer, {}, kRuns, 1, pure);
  struct Case {
    std::string name;
    SpeculationOptions options;
    bool correct;
  };
  auto often = perturbed_stories(0.05, 3), rarely = perturbed_stories(1.0, 4);
  const std::vector<Case> cases = {
      {"draft agreeing often", {.mode = SpeculationMode::draft_model, .draft_model = often}, true},
      {"draft agreeing rarely", {.mode = SpeculationMode::draft_model, .draft_model = rarely}, true},
      {"prompt lookup", {.mode = SpeculationMode::ngram}, true},
      {"accept every draft (wrong)",
       {.mode = SpeculationMode::draft_model, .draft_model = rarely, .accept_every_draft_for_testing = true}, false},
  };
  for (const Case& c : cases) {
    const auto speculative = sample_positions(model, tokenizer, c.options, kRuns, 1'000'000, pure);
    double smallest = 1;
    for (size_t position = 0; position < 3; ++position) {
      const double p = homogeneity_p(plain[position], speculative[position]);
      smallest = std::min(smallest, p);
      std::printf("[ %s ] position %zu: p = %.4g\n", c.name.c_str(), position, p);
      if (c.correct) EXPECT_GT(p, 0.001) << c.name << ", position " << position;
    }
    if (!c.correct) EXPECT_LT(smallest, 0.001) << c.name << ": the test cannot tell a wrong acceptance rule";
  }
  // Every other sampler option on too, applied to the draft's q as to the model's p: top-k,
  // top-p, min-p, a temperature, and the repeat, presence and frequency penalties (which see the
  // drafted tokens as they would see generated ones).
  const SamplingParams filtered{.temperature = 0.8f, .top_k = 30, .top_p = 0.9f, .min_p = 0.02f,
                                .repeat_penalty = 1.3f, .presence_penalty = 0.4f, .frequency_penalty = 0.3f};
  const auto plain_filtered = sample_positions(model, tokenizer, {}, kRuns, 1, filtered);
  const auto speculative_filtered = sample_positions(
      model, tokenizer, {.mode = SpeculationMode::draft_model, .draft_model = often}, kRuns, 1'000'000, filtered);
  for (size_t position = 0; position < 3; ++position) {
    const double p = homogeneity_p(plain_filtered[position], speculative_filtered[position]);
    std::printf("[ every sampler option, draft agreeing often ] position %zu: p = %.4g\n", position, p);
    EXPECT_GT(p, 0.001) << "every sampler option, position " << position;
  }
}

TEST(Speculation, ConstraintsAndStopStringsHold) {
  auto model = Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  auto draft = Model::load(test::shared_path("golden/qwen2-q4_0.gguf"));
  Engine plain(model, tokenizer, {.n_ctx = 256, .n_threads = 1});
  Engine by_draft(model, tokenizer,
                  {.n_ctx = 256, .n_threads = 1, .speculation = {.mode = SpeculationMode::draft_model, .draft_model = draft}});
  Engine by_lookup(model, tokenizer, {.n_ctx = 256, .n_threads = 1, .speculation = {.mode = SpeculationMode::ngram}});
  const std::vector<int32_t> prompt = tokenizer->encode("Answer in JSON: the list", false);
  const nlohmann::json schema = {{"type", "object"},
                                 {"properties", {{"items", {{"type", "array"}, {"items", {{"type", "integer"}}}, {"maxItems", 6}}}}},
                                 {"required", {"items"}}};
  for (Engine* engine : {&by_draft, &by_lookup}) {
    StreamOptions constrained = greedy(200);
    constrained.constraint = std::make_shared<JsonSchemaConstraint>(test::compile_tiny(schema.dump()));
    StreamOptions constrained_plain = greedy(200);
    constrained_plain.constraint = std::make_shared<JsonSchemaConstraint>(test::compile_tiny(schema.dump()));
    const Generation want = generate(plain, prompt, constrained_plain);
    const Generation got = generate(*engine, prompt, constrained);
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_EQ(got.summary.stop, StopReason::constraint_complete);
    EXPECT_NO_THROW((void)nlohmann::json::parse(tokenizer->decode(got.tokens)));
    EXPECT_GT(got.summary.drafted_tokens, 0);

    // A stop string inside text a draft proposes: generation ends at it, as without speculation.
    const Generation free_text = generate(plain, prompt, greedy(40));
    const std::string text = tokenizer->decode(free_text.tokens);
    ASSERT_GT(text.size(), 12u);
    StreamOptions stopping = greedy(40);
    stopping.stop = {text.substr(8, 3)};
    std::string got_text, want_text;
    for (auto [e, out] : {std::pair{engine, &got_text}, std::pair{&plain, &want_text}}) {
      GenerationJob job{.prompt = prompt, .options = stopping};
      job.on_step = [out = out](const TokenStep& step) {
        *out += step.text;
        return true;
      };
      EXPECT_EQ(e->run(std::move(job)).stop, StopReason::stop_string);
    }
    EXPECT_EQ(got_text, want_text);
  }
}

TEST(Speculation, LimitedMemoryModeVerifiesSeveralTokensPerWeightRead) {
  const std::string path = test::shared_path("golden/llama-q8_0.gguf");
  auto mapped = Model::load(path, {.measure_activation_levels = false});  // as streamed
  const uint64_t budget = mapped->file_bytes() * 9 / 10;  // a tiny model: streaming needs most of it
  auto streamed = Model::load(path, {.memory_budget = budget, .flash_layout = false});
  auto tokenizer = load_model_tokenizer(*mapped, test::shared_path("golden/qwen2-q8_0.gguf"));
  Engine plain(mapped, tokenizer, {.n_ctx = 128, .n_threads = 1});
  Engine speculative(streamed, tokenizer, {.n_ctx = 128, .n_threads = 1, .speculation = {.mode = SpeculationMode::ngram}});
  std::vector<int32_t> prompt;
  for (int i = 0; i < 12; ++i) prompt.push_back(100 + 7 * i);
  const Generation want = generate(plain, prompt, greedy(48));
  const Generation got = generate(speculative, prompt, greedy(48));
  EXPECT_EQ(got.tokens, want.tokens);
  const FlashStats stats = speculative.flash_stats();
  ASSERT_TRUE(stats.active);
  // One prefill pass, then one pass per verification: fewer passes than generated tokens.
  EXPECT_GT(got.summary.accepted_tokens, 0);
  EXPECT_EQ(stats.passes, 1 + got.summary.completion_tokens - 1 - got.summary.accepted_tokens);
}

// With a LoRA adapter the draft (the base's or its own model) proposes and the adapted model
// verifies: greedy output is the adapted model's without speculation, which differs from the base's.
TEST(Speculation, AnAdaptedModelVerifiesTheDrafts) {
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.bin"));
  auto tokenizer = load_model_tokenizer(*model, test::shared_path("models/stories260K/tok512.bin"));
  const ModelConfig& c = model->config();
  train::Lora lora;
  lora.config = {.rank = 4, .alpha = 8, .targets = {train::LoraTarget::q, train::LoraTarget::v, train::LoraTarget::up}};
  uint64_t state = 7;
  auto uniform = [&] { return static_cast<double>((state = state * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5; };
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (train::LoraTarget t : lora.config.targets) {
      const int64_t kv = c.n_kv_heads * c.head_dim;
      const int64_t out = t == train::LoraTarget::v ? kv : t == train::LoraTarget::up ? c.ffn_dim : c.dim;
      train::LoraAdapter a{.layer = l, .target = t, .in = c.dim, .out = out};
      for (int64_t i = 0; i < 4 * c.dim; ++i) a.a.push_back(0.3 * uniform());
      for (int64_t i = 0; i < out * 4; ++i) a.b.push_back(0.3 * uniform());
      lora.adapters.push_back(std::move(a));
    }
  const test::TempDir dir;
  train::save_gguf_adapter(lora, c, dir.file("tone.gguf"));
  const std::shared_ptr<const Adapter> adapter = Adapter::load(*model, dir.file("tone.gguf"));
  Engine plain(model, tokenizer, {.n_ctx = 200, .n_threads = 1});
  const std::vector<int32_t> prompt = tokenizer->encode("Once upon a time", true);
  auto run = [&](Engine& engine, std::shared_ptr<const Adapter> with) {
    std::vector<int32_t> tokens;
    GenerationJob job{.prompt = prompt, .options = greedy(120), .adapter = std::move(with)};
    job.on_step = [&](const TokenStep& step) {
      if (step.token >= 0) tokens.push_back(step.token);
      return true;
    };
    EXPECT_EQ(engine.run(std::move(job)).error, "");
    return tokens;
  };
  const std::vector<int32_t> adapted = run(plain, adapter);
  EXPECT_NE(adapted, run(plain, nullptr));
  for (const SpeculationOptions& speculation :
       {SpeculationOptions{.mode = SpeculationMode::ngram},
        SpeculationOptions{.mode = SpeculationMode::draft_model, .draft_model = perturbed_stories(0.05, 6)}}) {
    Engine speculative(model, tokenizer, {.n_ctx = 200, .n_threads = 1, .speculation = speculation});
    EXPECT_EQ(run(speculative, adapter), adapted);
  }
}

TEST(Speculation, ADraftOfAnotherVocabularyIsRefusedNamingIt) {
  auto model = Model::load(test::shared_path("models/stories260K/stories260K.bin"));
  auto tokenizer = load_model_tokenizer(*model, test::shared_path("models/stories260K/tok512.bin"));
  auto other = Model::load(test::shared_path("golden/qwen2-q8_0.gguf"));
  try {
    Engine engine(model, tokenizer, {.speculation = {.mode = SpeculationMode::draft_model, .draft_model = other}});
    FAIL() << "a draft of another vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qwen2-q8_0.gguf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Engine(model, tokenizer, {.speculation = {.mode = SpeculationMode::draft_model}}), Error);
  EXPECT_THROW(Engine(model, tokenizer, {.speculation = {.mode = SpeculationMode::ngram, .draft_max = 0}}), Error);
}

}  // namespace
}  // namespace orchard
