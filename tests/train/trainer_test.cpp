// The training loop (train/trainer.h) on stories260K through the scalar reference path: a run of 6
// steps and a run of 3 + resume 3 end with the same bytes; a NaN step is skipped, reported and
// leaves the weights alone; the loss falls on a small set it can overfit; rows outside an
// example's mask get no gradient, and the rows inside get exactly w/W times cross-entropy's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
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

}  // namespace
}  // namespace orchard::train
