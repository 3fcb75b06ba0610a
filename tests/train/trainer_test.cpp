// The training loop (train/trainer.h) on stories260K through the scalar reference path: a run of 6
// steps and a run of 3 + resume 3 end with the same bytes; a NaN step is skipped, reported and
// leaves the weights alone; the loss falls on a small set it can overfit; rows outside an
// example's mask get no gradient, and the rows inside get exactly w/W times cross-entropy's.
// On-policy distillation (OnPolicy): lambda 0 changes nothing; lambda 1 hands every step's prompts to
// the generator and trains on what it returns; the choice of on-policy steps survives a resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "train/dataset.h"
#include "train/trainer.h"

namespace orchard::train {
namespace {

const std::string kStories = "models/stories260K/stories260K.gguf";

std::vector<Example> examples(const std::vector<std::string>& lines) {
  static auto tok = Tokenizer::load(test::source_path(kStories));
  std::vector<Example> out;
  for (size_t i = 0; i < lines.size(); ++i)
    parse_example(lines[i], static_cast<int64_t>(i + 1), "test:" + std::to_string(i + 1), data_tokenizer(tok),
                  {.max_seq = 256}, out);
  return out;
}

std::vector<Example> small_set() {
  return examples({
      R"({"text": "Once upon a time, there was a little girl named Lily."})",
      R"({"prompt": "Tom had a red ball.", "completion": " He liked to play with it.", "weight": 2})",
      R"({"text": "The sun was hot and the sky was blue."})",
      R"({"prompt": "One day, a cat", "completion": " saw a bird in the tree.", "rationale": " Cats like birds."})",
      R"({"text": "She was very happy."})",
  });
}

std::unique_ptr<ReferenceTrainable> stories_model() {
  return std::make_unique<ReferenceTrainable>(load_reference_model(test::source_path(kStories)), nullptr, 0);
}

TrainConfig small_config() {
  TrainConfig c;
  c.steps = 6;
  c.batch_tokens = 30;
  c.accumulate = 2;
  c.lr = 3e-3;
  c.min_lr = 3e-4;
  c.warmup = 2;
  c.weight_decay = 0.1;
  c.clip = 0.5;
  c.seed = 7;
  c.rationale_weight = 0.5;
  return c;
}

std::vector<float> all_values(Trainable& model) {
  std::vector<float> out;
  for (const Parameter& p : model.parameters()) out.insert(out.end(), p.value.begin(), p.value.end());
  return out;
}

TEST(TrainTrainer, ResumeGivesTheSameBytes) {
  const std::vector<Example> data = small_set();
  const std::vector<Example> eval = examples({R"({"text": "Lily and Tom went to the park."})"});
  const TrainConfig config = small_config();

  auto straight = stories_model();
  Trainer a(*straight, config, data, eval);
  std::vector<StepReport> reports;
  a.run(0, [&](const StepReport& r) { reports.push_back(r); });
  ASSERT_EQ(reports.size(), 6u);
  EXPECT_EQ(a.step(), 6);
  for (const StepReport& r : reports) EXPECT_FALSE(r.skipped) << r.step << " " << r.skip_reason;
  EXPECT_TRUE(reports.back().evaluated);
  EXPECT_GT(a.position().epoch, 0) << "the run should cross an epoch boundary";

  test::TempDir dir;
  auto first = stories_model();
  {
    Trainer b(*first, config, data, eval);
    b.run(3, nullptr, dir.path());
    EXPECT_EQ(b.step(), 3);
  }
  auto resumed = stories_model();  // fresh weights: the checkpoint must carry them
  Trainer c(*resumed, config, data, eval);
  c.restore_checkpoint(dir.path());
  EXPECT_EQ(c.step(), 3);
  std::vector<StepReport> tail;
  c.run(0, [&](const StepReport& r) { tail.push_back(r); });
  ASSERT_EQ(tail.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(tail[i].step, reports[3 + i].step);
    EXPECT_EQ(tail[i].loss, reports[3 + i].loss);
    EXPECT_EQ(tail[i].grad_norm, reports[3 + i].grad_norm);
  }
  const std::vector<float> x = all_values(*straight), y = all_values(*resumed);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
  EXPECT_EQ(a.optimizer().save(), c.optimizer().save());
  EXPECT_NE(x, all_values(*stories_model())) << "training changed nothing";

  // A checkpoint of other settings is refused by name.
  TrainConfig other = config;
  other.lr = 1e-2;
  auto again = stories_model();
  Trainer d(*again, other, data, eval);
  try {
    d.restore_checkpoint(dir.path());
    ADD_FAILURE() << "a checkpoint of another lr was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
  // So is one of other data: its order would differ.
  const std::vector<Example> fewer(data.begin(), data.end() - 1);
  auto other_data = stories_model();
  Trainer f(*other_data, config, fewer, eval);
  try {
    f.restore_checkpoint(dir.path());
    ADD_FAILURE() << "a checkpoint of other data was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trained on other data"), std::string::npos) << e.what();
  }
}

// Wraps a model and poisons chosen calls: NaN logits handed to the loss, or a NaN gradient.
class Poisoned : public Trainable {
 public:
  Poisoned(Trainable& inner, std::vector<int> nan_logit_calls, std::vector<int> nan_grad_calls)
      : inner_(inner), logit_calls_(std::move(nan_logit_calls)), grad_calls_(std::move(nan_grad_calls)) {}
  std::span<Parameter> parameters() override { return inner_.parameters(); }
  void zero_gradients() override { inner_.zero_gradients(); }
  double loss_gradients(std::span<const std::vector<int32_t>> seqs, const BatchLoss& loss) override {
    ++calls_;
    const bool nan_logits = std::find(logit_calls_.begin(), logit_calls_.end(), calls_) != logit_calls_.end();
    const double l = inner_.loss_gradients(seqs, [&](size_t i, std::span<const float> logits, std::span<float> d) {
      if (!nan_logits) return loss(i, logits, d);
      std::vector<float> bad(logits.begin(), logits.end());
      bad[bad.size() / 2] = std::nanf("");
      return loss(i, bad, d);
    });
    if (std::find(grad_calls_.begin(), grad_calls_.end(), calls_) != grad_calls_.end())
      inner_.parameters()[1].grad[0] = std::numeric_limits<float>::infinity();
    return l;
  }
  double loss_only(std::span<const std::vector<int32_t>> seqs, const BatchLoss& loss) override {
    return inner_.loss_only(seqs, loss);
  }

 private:
  Trainable& inner_;
  std::vector<int> logit_calls_, grad_calls_;
  int calls_ = 0;
};

TEST(TrainTrainer, NonFiniteStepIsSkippedAndReported) {
  const std::vector<Example> data = small_set();
  TrainConfig config = small_config();
  config.accumulate = 1;
  config.steps = 4;
  auto base = stories_model();
  Poisoned model(*base, {2}, {4});  // step 2: NaN logits; step 4: an infinite gradient
  Trainer t(model, config, data, {});
  std::vector<StepReport> reports;
  std::vector<std::vector<float>> after;
  t.run(0, [&](const StepReport& r) {
    reports.push_back(r);
    after.push_back(all_values(*base));
  });
  ASSERT_EQ(reports.size(), 4u);
  EXPECT_FALSE(reports[0].skipped);
  EXPECT_TRUE(reports[1].skipped);
  EXPECT_NE(reports[1].skip_reason.find("non-finite logits"), std::string::npos) << reports[1].skip_reason;
  EXPECT_TRUE(reports[3].skipped);
  EXPECT_NE(reports[3].skip_reason.find("not finite"), std::string::npos) << reports[3].skip_reason;
  EXPECT_EQ(t.skipped_steps(), 2);
  EXPECT_EQ(t.optimizer().steps_taken(), 2);
  EXPECT_EQ(after[1], after[0]) << "a skipped step changed the weights";
  EXPECT_NE(after[2], after[1]);
  EXPECT_EQ(after[3], after[2]);
  for (const Parameter& p : base->parameters())
    for (float g : p.grad) ASSERT_EQ(g, 0.0f) << "a skipped step left its gradient behind";

  // More skipped steps in a row than allowed stop the run, naming the step.
  config.max_skipped = 2;
  config.steps = 10;
  auto base2 = stories_model();
  Poisoned always(*base2, {1, 2, 3, 4, 5}, {});
  Trainer u(always, config, data, {});
  try {
    u.run(0, nullptr);
    ADD_FAILURE() << "the run went on";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training stopped at step 3: 3 steps in a row were skipped"), std::string::npos)
        << e.what();
  }
}

TEST(TrainTrainer, LossFallsOnASmallOverfitSet) {
  const std::vector<Example> data = examples({
      R"({"text": "Zorbo the green frog sang a song about the moon."})",
      R"({"text": "Zorbo the green frog ate a big red cake."})",
      R"({"text": "Zorbo the green frog jumped over the old wall."})",
  });
  TrainConfig config;
  config.steps = 30;
  config.batch_tokens = 256;  // the whole set in each step
  config.lr = 1e-2;
  config.warmup = 3;
  config.min_lr = 1e-3;
  config.clip = 1.0;
  auto model = stories_model();
  Trainer t(*model, config, data, data);
  const double before = t.evaluate();
  std::vector<double> losses;
  t.run(0, [&](const StepReport& r) { losses.push_back(r.loss); });
  const double after = t.evaluate();
  std::printf("  overfit: eval CE %.4f -> %.4f; step losses %.4f, %.4f, ..., %.4f\n", before, after, losses[0],
              losses[1], losses.back());
  EXPECT_NEAR(losses[0], before, 1e-6) << "step 1's loss is the set's CE before any update";
  EXPECT_LT(after, 0.5 * before);
  EXPECT_LT(losses.back(), losses.front());
}

// Records what the loop hands the loss: the examples' logit gradients.
class Recorder : public Trainable {
 public:
  explicit Recorder(Trainable& inner) : inner_(inner) {}
  std::span<Parameter> parameters() override { return inner_.parameters(); }
  void zero_gradients() override { inner_.zero_gradients(); }
  double loss_gradients(std::span<const std::vector<int32_t>> seqs, const BatchLoss& loss) override {
    return inner_.loss_gradients(seqs, [&](size_t i, std::span<const float> logits, std::span<float> d) {
      const double l = loss(i, logits, d);
      records.push_back({seqs[i], std::vector<float>(logits.begin(), logits.end()), std::vector<float>(d.begin(), d.end())});
      return l;
    });
  }
  double loss_only(std::span<const std::vector<int32_t>> seqs, const BatchLoss& loss) override {
    return inner_.loss_only(seqs, loss);
  }
  struct Record {
    std::vector<int32_t> tokens;
    std::vector<float> logits, dlogits;
  };
  std::vector<Record> records;

 private:
  Trainable& inner_;
};

TEST(TrainTrainer, MasksAndWeightsReachTheLogitGradient) {
  const std::vector<Example> data = examples({
      R"({"prompt": "Tom had a red ball.", "completion": " He liked it.", "weight": 3})",
      R"({"prompt": "The cat", "completion": " sat.", "rationale": " It was tired."})",
  });
  ASSERT_EQ(data.size(), 3u);
  TrainConfig config;
  config.steps = 1;
  config.batch_tokens = 1000;
  config.rationale_weight = 0.25;
  auto base = stories_model();
  Recorder model(*base);
  Trainer t(model, config, data, {});
  t.run(0, nullptr);
  ASSERT_EQ(model.records.size(), 3u);
  const double W = 3 + 1 + 0.25;
  for (const auto& rec : model.records) {
    const Example* e = nullptr;
    for (const Example& x : data)
      if (x.tokens == rec.tokens) e = &x;
    ASSERT_NE(e, nullptr);
    const double w = (e->rationale ? 0.25 : e->weight) / W;
    const int64_t T = e->size(), V = static_cast<int64_t>(rec.logits.size()) / T;
    int64_t count = 0;
    for (uint8_t m : e->ce_mask) count += m;
    for (int64_t i = 0; i < T; ++i) {
      // softmax - onehot, over the masked rows' count, times the example's share of the weight.
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(rec.logits[i * V + j]));
      for (int64_t j = 0; j < V; ++j) sum += std::exp(rec.logits[i * V + j] - mx);
      for (int64_t j = 0; j < V; ++j) {
        const float got = rec.dlogits[i * V + j];
        if (!e->ce_mask[i]) {
          ASSERT_EQ(got, 0.0f) << "row " << i << " is outside the mask";
          continue;
        }
        const double want = w * (std::exp(rec.logits[i * V + j] - mx) / sum - (j == e->targets[i])) / count;
        ASSERT_NEAR(got, want, 1e-6 * std::fabs(want) + 1e-10) << "row " << i << " column " << j;
      }
    }
  }
}

TEST(TrainTrainer, BadConfigIsRefusedByName) {
  const std::vector<Example> data = small_set();
  auto model = stories_model();
  TrainConfig c = small_config();
  c.kd_alpha = 2;
  EXPECT_THROW({ Trainer t(*model, c, data, {}); }, Error);
  c = small_config();
  c.loss = LossKind::kd;
  try {
    Trainer t(*model, c, data, {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a teacher"), std::string::npos) << e.what();
  }
}

// A teacher on every example: one-hot on its own target at its CE rows (k = 1), so that the
// constructor's check for --loss kd (a teacher somewhere in the data) passes.
std::vector<Example> with_teacher(std::vector<Example> data) {
  for (Example& e : data) {
    e.teacher_k = 1;
    e.kd_mask = e.ce_mask;
    e.teacher_ids.assign(e.tokens.size(), 0);
    e.teacher_probs.assign(e.tokens.size(), 0.0f);
    for (size_t i = 0; i < e.tokens.size(); ++i)
      if (e.kd_mask[i]) e.teacher_ids[i] = e.targets[i], e.teacher_probs[i] = 1;
  }
  return data;
}

constexpr int32_t kFavourite = 100;  // the token the fake teacher puts all its mass on

// What a fake on-policy generator returns for a prompt: its tokens with the teacher one-hot on
// kFavourite at the last three rows (KD rows only, no CE rows), the prompt's weight.
Example favourite_answer(const Example& prompt) {
  Example e;
  e.tokens = prompt.tokens;
  const size_t T = e.tokens.size();
  e.targets.assign(T, 0);
  for (size_t i = 0; i + 1 < T; ++i) e.targets[i] = e.tokens[i + 1];
  e.ce_mask.assign(T, 0);
  e.kd_mask.assign(T, 0);
  e.teacher_k = 1;
  e.teacher_ids.assign(T, 0);
  e.teacher_probs.assign(T, 0.0f);
  for (size_t i = T >= 3 ? T - 3 : 0; i < T; ++i) e.kd_mask[i] = 1, e.teacher_ids[i] = kFavourite, e.teacher_probs[i] = 1;
  e.weight = prompt.weight;
  e.line = prompt.line;
  return e;
}

// The mean log-probability of kFavourite at an example's KD rows under the model, and the forward
// KL against the one-hot teacher at temperature T: T^2 * mean over the rows of -log_softmax(z / T)[fav].
struct FavouriteScore {
  double log_p = 0, kd = 0;
};
FavouriteScore favourite_score(Trainable& model, const Example& e, double T) {
  FavouriteScore out;
  model.loss_only(std::vector<std::vector<int32_t>>{e.tokens}, [&](size_t, std::span<const float> logits, std::span<float>) {
    const int64_t n = e.size(), V = static_cast<int64_t>(logits.size()) / n;
    int64_t rows = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!e.kd_mask[i]) continue;
      ++rows;
      const auto log_softmax_at = [&](double t) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, logits[i * V + j] / t);
        for (int64_t j = 0; j < V; ++j) sum += std::exp(logits[i * V + j] / t - mx);
        return logits[i * V + kFavourite] / t - mx - std::log(sum);
      };
      out.log_p += log_softmax_at(1.0);
      out.kd += -T * T * log_softmax_at(T);
    }
    out.log_p /= static_cast<double>(rows);
    out.kd /= static_cast<double>(rows);
    return 0.0;
  });
  return out;
}

TEST(TrainTrainer, OnPolicyLambdaZeroChangesNothing) {
  const std::vector<Example> data = with_teacher(small_set());
  TrainConfig config = small_config();
  config.loss = LossKind::kd;
  config.kd_alpha = 0.7;
  auto plain = stories_model();
  Trainer a(*plain, config, data, {});
  std::vector<StepReport> ra, rb;
  a.run(0, [&](const StepReport& r) { ra.push_back(r); });
  auto with = stories_model();
  Trainer b(*with, config, data, {});
  int calls = 0;
  b.set_on_policy({.lambda = 0, .generate = [&](std::span<const Example* const>, int64_t) {
                     ++calls;
                     return std::vector<Example>{};
                   }});
  b.run(0, [&](const StepReport& r) { rb.push_back(r); });
  EXPECT_EQ(calls, 0);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_FALSE(rb[i].on_policy);
    EXPECT_EQ(ra[i].loss, rb[i].loss);
    EXPECT_EQ(ra[i].grad_norm, rb[i].grad_norm);
  }
  const std::vector<float> x = all_values(*plain), y = all_values(*with);
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
  EXPECT_EQ(a.optimizer().save(), b.optimizer().save());

  // Settings that make no sense are refused.
  EXPECT_THROW(b.set_on_policy({.lambda = 1.5, .generate = [](auto, int64_t) { return std::vector<Example>{}; }}), Error);
  EXPECT_THROW(b.set_on_policy({.lambda = 0.5}), Error);
  config.loss = LossKind::ce;
  Trainer c(*with, config, data, {});
  try {
    c.set_on_policy({.lambda = 0.5, .generate = [](auto, int64_t) { return std::vector<Example>{}; }});
    ADD_FAILURE() << "on-policy with --loss ce was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--loss kd, rkl or jsd"), std::string::npos) << e.what();
  }
}

TEST(TrainTrainer, OnPolicyStepsTrainOnTheGeneratedAnswers) {
  const std::vector<Example> data = with_teacher(small_set());  // 6 examples, one a rationale
  ASSERT_EQ(data.size(), 6u);
  TrainConfig config;
  config.loss = LossKind::kd;
  config.kd_alpha = 0.3;  // not used on on-policy steps: KD alone
  config.temperature = 2;
  config.steps = 12;      // two epochs of one example a step
  config.batch_tokens = 1;
  config.lr = 1e-2;
  config.clip = 1.0;
  config.seed = 3;
  auto model = stories_model();
  Trainer t(*model, config, data, {});
  std::vector<std::pair<int64_t, std::vector<const Example*>>> calls;
  std::vector<Example> answers;  // every answer handed back, for the before/after scores
  t.set_on_policy({.lambda = 1, .generate = [&](std::span<const Example* const> batch, int64_t step) {
                     calls.push_back({step, std::vector<const Example*>(batch.begin(), batch.end())});
                     std::vector<Example> out;
                     for (const Example* e : batch) out.push_back(favourite_answer(*e));
                     answers.insert(answers.end(), out.begin(), out.end());
                     return out;
                   }});
  // The first step's loss, by hand: the KD of the first answer under the untrained model. The
  // answers depend only on the prompts, so the scores are taken on answers to every example.
  std::vector<Example> all_answers;
  for (const Example& e : data)
    if (!e.rationale) all_answers.push_back(favourite_answer(e));
  std::vector<FavouriteScore> before;
  for (const Example& e : all_answers) before.push_back(favourite_score(*model, e, config.temperature));

  std::vector<StepReport> reports;
  t.run(0, [&](const StepReport& r) { reports.push_back(r); });
  ASSERT_EQ(reports.size(), 12u);
  // Every step is on-policy; the rationale's steps have no prompt and are skipped; the others call
  // the generator once with that step's single example, each non-rationale example once an epoch.
  ASSERT_EQ(calls.size(), 10u);
  std::set<const Example*> epoch[2];
  size_t call = 0;
  for (const StepReport& r : reports) {
    EXPECT_TRUE(r.on_policy) << r.step;
    if (r.skipped) {
      EXPECT_NE(r.skip_reason.find("rationales"), std::string::npos) << r.skip_reason;
      continue;
    }
    ASSERT_LT(call, calls.size());
    EXPECT_EQ(calls[call].first, r.step);
    ASSERT_EQ(calls[call].second.size(), 1u);
    const Example* e = calls[call].second[0];
    EXPECT_FALSE(e->rationale);
    EXPECT_TRUE(epoch[r.step <= 6 ? 0 : 1].insert(e).second) << "an example twice in an epoch";
    EXPECT_EQ(r.tokens, e->size());
    ++call;
  }
  EXPECT_EQ(epoch[0].size(), 5u);
  EXPECT_EQ(epoch[1].size(), 5u);
  // Step 1 trained on the answer to its example, with KD alone (alpha 1).
  const StepReport& first = reports[0].skipped ? reports[1] : reports[0];
  const Example* first_prompt = calls[0].second[0];
  size_t index = 0;
  for (size_t i = 0; i < all_answers.size(); ++i)
    if (all_answers[i].tokens == first_prompt->tokens) index = i;
  EXPECT_NEAR(first.loss, before[index].kd, 1e-6 * before[index].kd);
  // And the training moved the student to the teacher's token on those rows.
  double log_p_before = 0, log_p_after = 0, kd_before = 0, kd_after = 0;
  for (size_t i = 0; i < all_answers.size(); ++i) {
    const FavouriteScore after = favourite_score(*model, all_answers[i], config.temperature);
    log_p_before += before[i].log_p, log_p_after += after.log_p;
    kd_before += before[i].kd, kd_after += after.kd;
  }
  std::printf("  on-policy: mean log p(favourite) %.3f -> %.3f, KD %.3f -> %.3f\n", log_p_before / 5, log_p_after / 5,
              kd_before / 5, kd_after / 5);
  EXPECT_GT(log_p_after, log_p_before + 5 * std::log(2.0)) << "p(favourite) should at least double";
  EXPECT_LT(kd_after, 0.7 * kd_before);
  double late = 0, early = 0;
  for (size_t i = 0; i < reports.size(); ++i)
    if (!reports[i].skipped) (i < 6 ? early : late) += reports[i].loss;
  EXPECT_LT(late, early);
}

TEST(TrainTrainer, OnPolicyChoiceSurvivesAResume) {
  // The draw: about lambda of many steps, whatever the seed.
  for (const double lambda : {0.1, 0.5, 0.9}) {
    int64_t on = 0;
    const int64_t n = 20000;
    for (int64_t s = 1; s <= n; ++s) on += on_policy_step(11, s, lambda);
    const double sigma = std::sqrt(n * lambda * (1 - lambda));
    EXPECT_NEAR(static_cast<double>(on), n * lambda, 5 * sigma) << lambda;
  }
  EXPECT_FALSE(on_policy_step(11, 5, 0));
  EXPECT_TRUE(on_policy_step(11, 5, 1));

  const std::vector<Example> data = with_teacher(small_set());
  TrainConfig config = small_config();
  config.loss = LossKind::kd;  // not rkl or jsd: over a one-hot teacher's k = 1 both are 0
  config.steps = 8;
  const OnPolicy on_policy{.lambda = 0.5, .generate = [](std::span<const Example* const> batch, int64_t) {
                             std::vector<Example> out;
                             for (const Example* e : batch) out.push_back(favourite_answer(*e));
                             return out;
                           }};
  auto straight = stories_model();
  Trainer a(*straight, config, data, {});
  a.set_on_policy(on_policy);
  std::vector<StepReport> reports;
  a.run(0, [&](const StepReport& r) { reports.push_back(r); });
  ASSERT_EQ(reports.size(), 8u);
  int on = 0;
  for (const StepReport& r : reports) {
    on += r.on_policy;
    EXPECT_EQ(r.on_policy, on_policy_step(config.seed, r.step, 0.5));
    EXPECT_FALSE(r.skipped) << r.step << " " << r.skip_reason;
  }
  ASSERT_GT(on, 0);
  ASSERT_LT(on, 8) << "the run should mix both kinds of step";

  test::TempDir dir;
  auto first = stories_model();
  {
    Trainer b(*first, config, data, {});
    b.set_on_policy(on_policy);
    b.run(4, nullptr, dir.path());
  }
  auto resumed = stories_model();
  Trainer c(*resumed, config, data, {});
  c.set_on_policy(on_policy);
  c.restore_checkpoint(dir.path());
  std::vector<StepReport> tail;
  c.run(0, [&](const StepReport& r) { tail.push_back(r); });
  ASSERT_EQ(tail.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(tail[i].on_policy, reports[4 + i].on_policy) << tail[i].step;
    EXPECT_EQ(tail[i].loss, reports[4 + i].loss) << tail[i].step;
  }
  const std::vector<float> x = all_values(*straight), y = all_values(*resumed);
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace orchard::train
