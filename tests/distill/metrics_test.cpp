// distill/metrics.h against a hand computation: the student's logits taken independently (the
// engine's Context on the reference kernels, not FastModel), the softmax, KL, top-1 and CE written
// out here in double, on examples made up in the test over stories260K.
#include "distill/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "orchard/model.h"
#include "test_paths.h"

namespace orchard::distill {
namespace {

std::shared_ptr<const Model> student_model() {
  return Model::load(test::shared_path("models/stories260K/stories260K.gguf"), {.kernels = KernelChoice::reference});
}

// log softmax of every row of the engine's logits for `tokens`, in double.
std::vector<std::vector<double>> log_probs(const std::shared_ptr<const Model>& model,
                                           const std::vector<int32_t>& tokens) {
  Context ctx(model, {.n_ctx = 64, .kernels = KernelChoice::reference, .n_threads = 1});
  const std::vector<float> z = ctx.eval(tokens);
  const size_t V = z.size() / tokens.size();
  std::vector<std::vector<double>> out(tokens.size(), std::vector<double>(V));
  for (size_t i = 0; i < tokens.size(); ++i) {
    double m = -INFINITY;
    for (size_t c = 0; c < V; ++c) m = std::max(m, static_cast<double>(z[i * V + c]));
    double s = 0;
    for (size_t c = 0; c < V; ++c) s += std::exp(z[i * V + c] - m);
    for (size_t c = 0; c < V; ++c) out[i][c] = z[i * V + c] - m - std::log(s);
  }
  return out;
}

train::Example make_example(std::vector<int32_t> tokens, int64_t k) {
  train::Example e;
  const size_t T = tokens.size();
  e.tokens = std::move(tokens);
  e.targets.assign(T, 0);
  for (size_t i = 0; i + 1 < T; ++i) e.targets[i] = e.tokens[i + 1];
  e.ce_mask.assign(T, 0);
  e.kd_mask.assign(T, 0);
  e.teacher_k = k;
  e.teacher_ids.assign(T * k, 0);
  e.teacher_probs.assign(T * k, 0.0f);
  return e;
}

TEST(DistillMetrics, MatchAHandComputationOnTheEnginesLogits) {
  const auto model = student_model();
  const int64_t V = model->config().n_vocab, k = 5;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(V) - 1);
  auto random_tokens = [&](size_t n) {
    std::vector<int32_t> t = {1};
    while (t.size() < n) t.push_back(token(rng));
    return t;
  };

  // Example 0: the teacher rows are the student's own top k, renormalized; rows 3..9 (answer).
  // Example 1: random teacher rows (distinct ids, random probabilities, one row's likeliest the
  //            student's argmax by construction, the others random); rows 2..10.
  // Example 2: a rationale sequence: CE rows that must not count in ce, no teacher.
  // Example 3: an answer without a teacher (sft_only): CE counts, no KD rows.
  std::vector<train::Example> ex = {make_example(random_tokens(12), k), make_example(random_tokens(14), k),
                                    make_example(random_tokens(9), 0), make_example(random_tokens(10), 0)};
  std::vector<std::vector<std::vector<double>>> lp;
  for (const auto& e : ex) lp.push_back(log_probs(model, e.tokens));

  for (int64_t i = 3; i <= 9; ++i) {
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return lp[0][i][a] > lp[0][i][b]; });
    double mass = 0;
    for (int64_t j = 0; j < k; ++j) mass += std::exp(lp[0][i][order[j]]);
    for (int64_t j = 0; j < k; ++j) {
      ex[0].teacher_ids[i * k + j] = order[k - 1 - j];  // stored least likely first: the order must not matter
      ex[0].teacher_probs[i * k + j] = static_cast<float>(std::exp(lp[0][i][order[k - 1 - j]]) / mass);
    }
    ex[0].kd_mask[i] = ex[0].ce_mask[i] = 1;
  }
  std::uniform_real_distribution<double> unit(0.05, 1.0);
  for (int64_t i = 2; i <= 10; ++i) {
    std::vector<int32_t> ids;
    if (i % 2 == 0)  // the student's argmax among the ids, and the likeliest below
      ids.push_back(static_cast<int32_t>(std::max_element(lp[1][i].begin(), lp[1][i].end()) - lp[1][i].begin()));
    while (static_cast<int64_t>(ids.size()) < k) {
      const int32_t c = token(rng);
      if (std::find(ids.begin(), ids.end(), c) == ids.end()) ids.push_back(c);
    }
    std::vector<double> p(k);
    for (double& v : p) v = unit(rng);
    if (i % 2 == 0) p[0] = 2.0;
    if (i == 4) p[k - 1] = 0;  // a zero entry counts nothing
    const double sum = std::accumulate(p.begin(), p.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      ex[1].teacher_ids[i * k + j] = ids[j];
      ex[1].teacher_probs[i * k + j] = static_cast<float>(p[j] / sum);
    }
    ex[1].kd_mask[i] = ex[1].ce_mask[i] = 1;
  }
  ex[2].rationale = true;
  for (int64_t i = 1; i <= 7; ++i) ex[2].ce_mask[i] = 1;
  for (int64_t i = 4; i <= 8; ++i) ex[3].ce_mask[i] = 1;

  // The hand computation.
  double kl_sum = 0, ce_sum = 0;
  int64_t rows = 0, ce_rows = 0, agree = 0;
  std::vector<double> want_kl(ex.size(), NAN), want_ce(ex.size(), NAN);
  for (size_t n = 0; n < ex.size(); ++n) {
    const auto& e = ex[n];
    double ekl = 0, ece = 0;
    int64_t er = 0, ec = 0;
    for (int64_t i = 0; i < e.size(); ++i) {
      if (e.kd_mask[i]) {
        double kl = 0;
        int64_t best_j = 0;
        for (int64_t j = 0; j < k; ++j) {
          const double p = e.teacher_probs[i * k + j];
          if (p > e.teacher_probs[i * k + best_j]) best_j = j;
          if (p > 0) kl += p * (std::log(p) - lp[n][i][e.teacher_ids[i * k + j]]);
        }
        const int32_t argmax =
            static_cast<int32_t>(std::max_element(lp[n][i].begin(), lp[n][i].end()) - lp[n][i].begin());
        agree += argmax == e.teacher_ids[i * k + best_j];
        ekl += kl, ++er;
      }
      if (e.ce_mask[i] && !e.rationale) ece += -lp[n][i][e.targets[i]], ++ec;
    }
    kl_sum += ekl, ce_sum += ece, rows += er, ce_rows += ec;
    if (er) want_kl[n] = ekl / er;
    if (ec) want_ce[n] = ece / ec;
  }

  for (int64_t batch_tokens : {1, 4096}) {  // one example per batch, and all in one
    train::FastModel student(*model, {.kernels = KernelChoice::reference, .n_threads = 1, .lora_rank = 1});
    const TeacherMetrics m = score_examples(student, ex, batch_tokens);
    EXPECT_EQ(m.examples, 4);
    EXPECT_EQ(m.rows, 7 + 9);
    EXPECT_EQ(m.ce_rows, 7 + 9 + 5);
    EXPECT_NEAR(m.kl, kl_sum / rows, 1e-4);
    EXPECT_NEAR(m.ce, ce_sum / ce_rows, 1e-4);
    EXPECT_DOUBLE_EQ(m.agreement, static_cast<double>(agree) / rows);
    ASSERT_EQ(m.per_example_kl.size(), 4u);
    ASSERT_EQ(m.per_example_ce.size(), 4u);
    for (size_t n = 0; n < 4; ++n) {
      if (std::isnan(want_kl[n])) EXPECT_TRUE(std::isnan(m.per_example_kl[n])) << n;
      else EXPECT_NEAR(m.per_example_kl[n], want_kl[n], 1e-4) << n;
      if (std::isnan(want_ce[n])) EXPECT_TRUE(std::isnan(m.per_example_ce[n])) << n;
      else EXPECT_NEAR(m.per_example_ce[n], want_ce[n], 1e-4) << n;
    }
    // Example 0: the teacher is the student's top k: KL = mean of -log(top-k mass), top-1 always agrees.
    double want0 = 0;
    for (int64_t i = 3; i <= 9; ++i) {
      std::vector<double> row = lp[0][i];
      std::sort(row.begin(), row.end(), std::greater<>());
      double mass = 0;
      for (int64_t j = 0; j < k; ++j) mass += std::exp(row[j]);
      want0 += -std::log(mass);
    }
    EXPECT_NEAR(m.per_example_kl[0], want0 / 7, 1e-4);
    EXPECT_GT(m.per_example_kl[0], 0);
    // Rows 2, 4, ..., 10 of example 1 agree by construction; the metrics agree at least there.
    EXPECT_GE(m.agreement, (7.0 + 5.0) / 16.0);
  }
}

TEST(DistillMetrics, NoTeacherRowsGiveNaNAndBadIdsAreRefused) {
  const auto model = student_model();
  train::FastModel student(*model, {.kernels = KernelChoice::reference, .n_threads = 1, .lora_rank = 1});
  std::vector<train::Example> ex = {make_example({1, 5, 9, 12}, 0)};
  ex[0].ce_mask[1] = 1;
  TeacherMetrics m = score_examples(student, ex);
  EXPECT_EQ(m.rows, 0);
  EXPECT_TRUE(std::isnan(m.kl));
  EXPECT_TRUE(std::isnan(m.agreement));
  EXPECT_EQ(m.ce_rows, 1);
  EXPECT_TRUE(std::isfinite(m.ce));

  std::vector<train::Example> bad = {make_example({1, 5, 9, 12}, 2)};
  bad[0].kd_mask[1] = 1;
  bad[0].teacher_ids[2] = static_cast<int32_t>(model->config().n_vocab);
  bad[0].teacher_ids[3] = 4;
  bad[0].teacher_probs[2] = bad[0].teacher_probs[3] = 0.5f;
  bad[0].line = 17;
  try {
    score_examples(student, bad);
    FAIL() << "an id outside the vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 17"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace orchard::distill
