// Embeddings (Engine::embed, GenerationJob::embedding) against an oracle that is not Orchard: the
// golden qwen2 and qwen3 models tie their output matrix to the token embedding E (1024 x 256, full
// column rank), so a position's final hidden state h, after the output norm, is recovered from the
// float64 reference logits of ../shared/golden by least squares (logits = E h), solved here in
// double. The engine's last-token vector must be normalize(h of the last position), its mean
// vector normalize(mean of the h's).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <ostream>
#include <thread>

#include "base/error.h"
#include "formats/gguf.h"
#include "golden.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "tensor/dequantize.h"
#include "test_paths.h"

namespace orchard {
namespace {

constexpr double kReferenceCosineDistance = 1e-5, kFastCosineDistance = 1e-4;

struct Oracle {
  int64_t dim = 0;
  std::vector<std::vector<double>> hidden;  // per position of the sequence, [dim]
  double worst_residual = 0;                // max over positions of |E h - logits| / |logits|
};

// Solves the normal equations (E^T E) h = E^T l per position by Cholesky, in double.
Oracle recover_hidden(const std::string& model_file, const std::string& reference_file) {
  auto gguf = GgufFile::open(test::shared_path("golden/" + model_file));
  if (gguf->find_tensor("output.weight")) fail(model_file, " has an output matrix of its own: not tied");
  const GgufTensor* embd = gguf->find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) fail(model_file, ": no token_embd.weight");
  const int64_t dim = embd->shape[0], vocab = embd->shape[1];
  const size_t row_bytes = embd->nbytes / static_cast<size_t>(vocab);
  std::vector<double> e(static_cast<size_t>(vocab * dim));
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t v = 0; v < vocab; ++v) {
    dequantize_row(embd->type, embd->data + static_cast<size_t>(v) * row_bytes, row.data(), dim);
    for (int64_t i = 0; i < dim; ++i) e[static_cast<size_t>(v * dim + i)] = row[static_cast<size_t>(i)];
  }
  // G = E^T E, then its Cholesky factor L (lower, G = L L^T).
  const size_t d = static_cast<size_t>(dim);
  std::vector<double> g(d * d, 0.0);
  for (int64_t v = 0; v < vocab; ++v) {
    const double* r = &e[static_cast<size_t>(v * dim)];
    for (size_t i = 0; i < d; ++i)
      for (size_t j = 0; j <= i; ++j) g[i * d + j] += r[i] * r[j];
  }
  std::vector<double> l(d * d, 0.0);
  for (size_t j = 0; j < d; ++j) {
    double diag = g[j * d + j];
    for (size_t k = 0; k < j; ++k) diag -= l[j * d + k] * l[j * d + k];
    if (!(diag > 0)) fail(model_file, ": E^T E is not positive definite (E is not of full column rank)");
    l[j * d + j] = std::sqrt(diag);
    for (size_t i = j + 1; i < d; ++i) {
      double sum = g[i * d + j];
      for (size_t k = 0; k < j; ++k) sum -= l[i * d + k] * l[j * d + k];
      l[i * d + j] = sum / l[j * d + j];
    }
  }
  const std::vector<float> logits = test::read_f32_file(test::shared_path("golden/" + reference_file));
  const size_t positions = logits.size() / static_cast<size_t>(vocab);
  Oracle oracle;
  oracle.dim = dim;
  for (size_t p = 0; p < positions; ++p) {
    const float* lp = &logits[p * static_cast<size_t>(vocab)];
    std::vector<double> b(d, 0.0);
    for (int64_t v = 0; v < vocab; ++v)
      for (size_t i = 0; i < d; ++i) b[i] += e[static_cast<size_t>(v * dim) + i] * lp[v];
    for (size_t i = 0; i < d; ++i) {  // L y = b
      for (size_t k = 0; k < i; ++k) b[i] -= l[i * d + k] * b[k];
      b[i] /= l[i * d + i];
    }
    for (size_t i = d; i-- > 0;) {  // L^T h = y
      for (size_t k = i + 1; k < d; ++k) b[i] -= l[k * d + i] * b[k];
      b[i] /= l[i * d + i];
    }
    double residual = 0, norm = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      double fit = 0;
      for (size_t i = 0; i < d; ++i) fit += e[static_cast<size_t>(v * dim) + i] * b[i];
      residual += (fit - lp[v]) * (fit - lp[v]);
      norm += static_cast<double>(lp[v]) * lp[v];
    }
    oracle.worst_residual = std::max(oracle.worst_residual, std::sqrt(residual / norm));
    oracle.hidden.push_back(std::move(b));
  }
  return oracle;
}

double cosine_distance(const std::vector<double>& expected, const std::vector<float>& actual) {
  if (expected.size() != actual.size()) return 2.0;
  double dot = 0, ee = 0, aa = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    dot += expected[i] * actual[i];
    ee += expected[i] * expected[i];
    aa += static_cast<double>(actual[i]) * actual[i];
  }
  return 1.0 - dot / std::sqrt(ee * aa);
}

double norm_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

std::vector<double> mean_of(const std::vector<std::vector<double>>& rows) {
  std::vector<double> m(rows.front().size(), 0.0);
  for (const auto& r : rows)
    for (size_t i = 0; i < m.size(); ++i) m[i] += r[i] / static_cast<double>(rows.size());
  return m;
}

struct Case {
  std::string model;
  KernelChoice kernels;
};

// gtest prints a parameter with this instead of its bytes (padding included).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << (c.kernels == KernelChoice::reference ? " reference" : " fast");
}

class EmbeddingOracle : public ::testing::TestWithParam<Case> {};

TEST_P(EmbeddingOracle, PooledVectorsAreTheNormalisedRecoveredHiddenStates) {
  const Case& c = GetParam();
  const double bound = c.kernels == KernelChoice::reference ? kReferenceCosineDistance : kFastCosineDistance;
  auto model = Model::load(test::shared_path("golden/" + c.model + ".gguf"), {.kernels = c.kernels});
  Engine engine(model, load_model_tokenizer(*model), {.slots = 2, .n_ctx = 128, .kernels = c.kernels, .n_threads = 1});
  for (const char* sequence : {"short", "long"}) {
    SCOPED_TRACE(sequence);
    const Oracle oracle = recover_hidden(c.model + ".gguf", c.model + "." + sequence + ".ref.f32");
    // The oracle holds only if the logits lie in E's column space (the output is tied).
    EXPECT_LT(oracle.worst_residual, 1e-5);
    const std::vector<int32_t> tokens = test::golden_sequence(sequence);
    ASSERT_EQ(oracle.hidden.size(), tokens.size());
    const auto last = engine.embed({tokens}, Pooling::last);
    ASSERT_EQ(last.size(), 1u);
    ASSERT_EQ(last[0].size(), static_cast<size_t>(model->config().dim));
    EXPECT_NEAR(norm_of(last[0]), 1.0, 1e-6);
    EXPECT_LE(cosine_distance(oracle.hidden.back(), last[0]), bound);
    const auto mean = engine.embed({tokens}, Pooling::mean);
    EXPECT_NEAR(norm_of(mean[0]), 1.0, 1e-6);
    EXPECT_LE(cosine_distance(mean_of(oracle.hidden), mean[0]), bound);
    // Not the same vector by accident: the last position's and the mean differ.
    EXPECT_GT(cosine_distance(oracle.hidden.back(), mean[0]), 100 * bound);
    // A prefix's last token is an earlier position's state.
    const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 5);
    EXPECT_LE(cosine_distance(oracle.hidden[4], engine.embed({prefix}, Pooling::last)[0]), bound);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, EmbeddingOracle,
                         ::testing::Values(Case{"qwen2-f32", KernelChoice::reference}, Case{"qwen3-f32", KernelChoice::reference},
                                           Case{"qwen2-f32", KernelChoice::fast}, Case{"qwen3-f32", KernelChoice::fast},
                                           Case{"qwen2-q8_0", KernelChoice::fast}),
                         [](const auto& info) {
                           std::string name = info.param.model + (info.param.kernels == KernelChoice::reference ? "_reference" : "_fast");
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

struct PassObserver : EngineObserver {
  std::mutex mutex;
  int64_t widest = 0, prefilled = 0;
  void on_pass(int64_t sequences, int64_t) override {
    std::lock_guard<std::mutex> lock(mutex);
    widest = std::max(widest, sequences);
  }
  void on_prefill(int64_t tokens) override {
    std::lock_guard<std::mutex> lock(mutex);
    prefilled += tokens;
  }
};

// Several inputs share passes and give bitwise the vectors each gives alone, also when a cached
// prefix is reused; a generation after them is unchanged (the prefix cache stays right).
void check_batching(KernelChoice kernels) {
  auto model = Model::load(test::shared_path("golden/qwen3-f32.gguf"), {.kernels = kernels});
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> shorter = test::golden_sequence("short"), longer = test::golden_sequence("long");
  const std::vector<int32_t> head(longer.begin(), longer.begin() + 20);
  const std::vector<std::vector<int32_t>> inputs = {longer, shorter, head, {7}};
  for (Pooling pooling : {Pooling::last, Pooling::mean}) {
    SCOPED_TRACE(pooling == Pooling::last ? "last" : "mean");
    std::vector<std::vector<float>> alone;
    for (const auto& input : inputs) {
      Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 128, .kernels = kernels, .n_threads = 1});
      alone.push_back(engine.embed({input}, pooling)[0]);
    }
    PassObserver observer;
    Engine engine(model, tokenizer, {.slots = 4, .n_ctx = 128, .kernels = kernels, .n_threads = 1, .observer = &observer});
    ASSERT_EQ(engine.lanes(), 1);
    const auto together = engine.embed(inputs, pooling);
    EXPECT_EQ(observer.widest, 4);  // one pass for the four
    ASSERT_EQ(together.size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "input " << i;
    // Again: last pooling reuses each slot's cached prefix, mean prefills everything again.
    const int64_t before = observer.prefilled;
    const auto again = engine.embed(inputs, pooling);
    for (size_t i = 0; i < inputs.size(); ++i) EXPECT_EQ(again[i], alone[i]) << "input " << i;
    const int64_t expected = pooling == Pooling::last ? 4 : 64 + 8 + 20 + 1;
    EXPECT_EQ(observer.prefilled - before, expected);
  }
}

TEST(Embedding, BatchedEqualsAloneReference) { check_batching(KernelChoice::reference); }
TEST(Embedding, BatchedEqualsAloneFast) { check_batching(KernelChoice::fast); }

StreamOptions greedy(int64_t max_tokens) {
  StreamOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  return o;
}

std::vector<int32_t> generate(Engine& engine, const std::vector<int32_t>& prompt, JobSummary* summary = nullptr) {
  std::vector<int32_t> out;
  GenerationJob job;
  job.prompt = prompt;
  job.options = greedy(12);
  job.on_step = [&](const TokenStep& step) {
    if (step.token >= 0) out.push_back(step.token);
    return true;
  };
  const JobSummary s = engine.run(std::move(job));
  EXPECT_EQ(s.error, "");
  if (summary) *summary = s;
  return out;
}

// Embedding jobs leave their prompt in the slot's cache like any prefill: a generation on that
// prefix after them reuses it and gives the tokens it gives on a fresh engine. Also a scoring job's
// kept logits (max_tokens 0) must not survive an embedding pass over the slot.
TEST(Embedding, GenerationAfterEmbeddingsIsUnchanged) {
  auto model = Model::load(test::shared_path("golden/qwen2-f32.gguf"), {.kernels = KernelChoice::reference});
  auto tokenizer = load_model_tokenizer(*model);
  const std::vector<int32_t> prompt = test::golden_sequence("long");
  const std::vector<int32_t> other(prompt.begin(), prompt.begin() + 30);
  std::vector<int32_t> fresh;
  {
    Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 1});
    fresh = generate(engine, prompt);
  }
  ASSERT_FALSE(fresh.empty());
  Engine engine(model, tokenizer, {.slots = 1, .n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 1});
  engine.embed({prompt}, Pooling::last);
  JobSummary summary;
  EXPECT_EQ(generate(engine, prompt, &summary), fresh);
  EXPECT_EQ(summary.cached_prompt_tokens, static_cast<int64_t>(prompt.size()) - 1);
  engine.embed({other}, Pooling::mean);
  EXPECT_EQ(generate(engine, prompt, &summary), fresh);
  EXPECT_EQ(summary.cached_prompt_tokens, static_cast<int64_t>(other.size()));
  // A scoring job keeps its last logits; an embedding of the same prompt then runs the last
  // position again (no logits), and the next generation must not pick from stale ones.
  GenerationJob scoring;
  scoring.prompt = other;
  scoring.options = greedy(0);
  scoring.on_step = [](const TokenStep&) { return true; };
  engine.run(std::move(scoring));
  engine.embed({other}, Pooling::last);
  std::vector<int32_t> expected;
  {
    Engine clean(model, tokenizer, {.slots = 1, .n_ctx = 128, .kernels = KernelChoice::reference, .n_threads = 1});
    expected = generate(clean, other);
  }
  EXPECT_EQ(generate(engine, other), expected);
}

TEST(Embedding, BadInputsFailNamingTheInput) {
  auto model = Model::load(test::shared_path("golden/qwen2-f32.gguf"), {.kernels = KernelChoice::reference});
  Engine engine(model, load_model_tokenizer(*model), {.slots = 2, .n_ctx = 16, .kernels = KernelChoice::reference, .n_threads = 1});
  EXPECT_TRUE(engine.embed({}, Pooling::last).empty());
  try {
    engine.embed({{1, 2}, {}}, Pooling::last);
    ADD_FAILURE() << "an empty input was embedded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine.embed({{1, 5000}}, Pooling::mean), Error);
  // The context may be filled (nothing is generated), not exceeded.
  EXPECT_EQ(engine.embed({std::vector<int32_t>(16, 3)}, Pooling::mean).size(), 1u);
  EXPECT_THROW(engine.embed({std::vector<int32_t>(17, 3)}, Pooling::last), Error);
}

// A client that leaves while its inputs wait for a slot: `abandoned` is asked on the waiting
// thread, and the inputs end at their slot, before their prefill.
TEST(Embedding, InputsOfAClientThatLeftEndBeforeTheirPrefill) {
  auto model = Model::load(test::shared_path("golden/qwen2-f32.gguf"), {.kernels = KernelChoice::reference});
  PassObserver observer;
  Engine engine(model, load_model_tokenizer(*model),
                {.slots = 1, .n_ctx = 64, .kernels = KernelChoice::reference, .n_threads = 1, .observer = &observer});
  // The one slot is busy for a while (20 tokens, 20 ms each) with a generation already running.
  std::mutex mutex;
  std::condition_variable started_cv;
  bool started = false;
  auto running = std::make_shared<GenerationJob>();
  running->prompt = {1, 2, 3};
  running->options = greedy(20);
  running->on_step = [&](const TokenStep&) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      started = true;
    }
    started_cv.notify_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  };
  engine.submit(running);
  {
    std::unique_lock<std::mutex> lock(mutex);
    started_cv.wait(lock, [&] { return started; });
  }
  const int64_t prefilled = observer.prefilled;
  std::atomic<int> asked{0};
  EXPECT_THROW(engine.embed({{4, 5, 6}}, Pooling::last, nullptr, [&] { return ++asked > 0; }), Error);
  EXPECT_GE(asked.load(), 1);
  EXPECT_EQ(observer.prefilled, prefilled);  // the input never ran
  // A client still there gets its vector.
  EXPECT_EQ(engine.embed({{4, 5, 6}}, Pooling::last, nullptr, [] { return false; }).size(), 1u);
}

}  // namespace
}  // namespace orchard
