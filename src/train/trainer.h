// The training loop (issue 17; docs/training.md): examples packed into micro-batches, each
// example's loss on its rows (loss.h), gradients summed over a step's micro-batches, clipped, an
// AdamW step at the schedule's rate; a step whose loss or gradient is not finite is skipped and
// reported; evaluation every N steps; checkpoints that resume bit for bit.
//
// The step's loss is the weighted mean over its examples:  L = sum_e w_e L_e / sum_e w_e, where L_e
// is the example's loss on its own rows (cross-entropy on its CE mask, or the distillation loss /
// mix on its KD and CE masks) and w_e its weight (times --rationale-weight for a rationale
// sequence). Each example's logit gradient is scaled by w_e / sum w before the backward pass, so
// the model's gradient buffers hold dL/dθ after the step's last micro-batch: accumulation with the
// exact weighted mean, whatever the micro-batches' sizes.
//
// Determinism: the data order is a Fisher-Yates shuffle from a 64-bit generator seeded by (seed,
// epoch), every sum runs in a fixed order, and a checkpoint holds the parameters, the optimizer's
// bytes and the data position, so N steps in one run and k steps + resume N - k give the same bytes
// (provided the model's own passes are deterministic, as FastModel's and the reference path are).
//
// On-policy distillation (GKD, issue 18; set_on_policy): a fraction lambda of the steps train on the
// student's own answers scored by a teacher instead of on the data's rows. See OnPolicy.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/lora.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace orchard::train {

// The loss of sequence `index` of a batch on its logits [T, V]: returns it and writes its gradient
// into dlogits [T, V]. (The same type as fast_model.h's SequenceLoss.)
using BatchLoss = std::function<double(size_t index, std::span<const float> logits, std::span<float> dlogits)>;

// What the loop needs of a model: FastModel has exactly these (wrap it in TrainableOf<FastModel>),
// and ReferenceTrainable below runs the scalar reference path.
class Trainable {
 public:
  virtual ~Trainable() = default;
  virtual std::span<Parameter> parameters() = 0;
  virtual void zero_gradients() = 0;
  // Sum of the losses; ADDS every parameter's gradient.
  virtual double loss_gradients(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) = 0;
  virtual double loss_only(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) = 0;
};

template <typename Model>
class TrainableOf : public Trainable {
 public:
  explicit TrainableOf(Model& model) : model_(model) {}
  std::span<Parameter> parameters() override { return model_.parameters(); }
  void zero_gradients() override { model_.zero_gradients(); }
  double loss_gradients(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) override {
    return model_.loss_gradients(sequences, loss);
  }
  double loss_only(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) override {
    return model_.loss_only(sequences, loss);
  }

 private:
  Model& model_;
};

// The scalar reference path (reference_model.h, double inside) as a Trainable: every tensor (full
// fine-tuning, float32 parameters rounded from the model's weights) or LoRA adapters (A drawn
// uniform in +-1/sqrt(in) from `seed` as PEFT's Kaiming init does, B zero). Slow; for small models,
// tests and as the definition.
class ReferenceTrainable : public Trainable {
 public:
  ReferenceTrainable(ReferenceModel model, const LoraConfig* lora, uint64_t seed);
  std::span<Parameter> parameters() override { return params_; }
  void zero_gradients() override;
  double loss_gradients(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) override;
  double loss_only(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) override;
  bool is_lora() const { return lora_enabled_; }
  Lora lora() const;  // the adapters at the parameters' current values

 private:
  void sync();  // the float32 parameters into the double model (or adapters)
  ReferenceModel model_;
  ReferenceModel effective_;
  bool lora_enabled_ = false;
  Lora lora_;
  std::vector<std::vector<float>> values_, grads_;
  std::vector<Parameter> params_;
};

enum class LossKind { ce, kd, rkl, jsd };
LossKind parse_loss_kind(const std::string& name);  // "ce", "kd", "rkl", "jsd"
const char* loss_kind_name(LossKind kind);

struct TrainConfig {
  LossKind loss = LossKind::ce;
  double kd_alpha = 1.0;     // distillation: alpha * KD + (1 - alpha) * CE on examples with a teacher
  double temperature = 2.0;  // KD temperature
  double jsd_beta = 0.5;
  double rationale_weight = 1.0;
  int64_t steps = 100;
  int64_t batch_tokens = 2048;  // a micro-batch takes examples in order while their tokens fit (at least one;
                                // it ends with the epoch)
  int64_t accumulate = 1;       // micro-batches per step
  double lr = 1e-3, min_lr = 0;
  int64_t warmup = 0;
  double weight_decay = 0.0;
  double clip = 1.0;  // <= 0: no clipping
  uint64_t seed = 0;
  int64_t eval_every = 0;     // 0: only at the end (when there is an eval set)
  int64_t max_skipped = 10;   // more consecutive skipped steps than this stop the run
  int64_t checkpoint_every = 0;  // 0: only at the end (when a checkpoint folder is given)
};

// What a step did; passed to the callback and written to the log.
struct StepReport {
  int64_t step = 0;  // 1-based
  double loss = 0;   // the weighted mean (NaN or inf when skipped)
  double lr = 0;
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;    // the step's tokens
  double seconds = 0;    // the step's wall time (its evaluation not included)
  bool skipped = false;
  std::string skip_reason;
  bool evaluated = false;
  double eval_loss = 0;
  bool on_policy = false;  // the step trained on the student's own answers (OnPolicy)
};

// On-policy distillation (GKD: Agarwal et al., "On-Policy Distillation of Language Models"). A step is
// on-policy when a draw in [0, 1) from (config.seed, step) alone is below `lambda`, so which steps are
// on-policy does not depend on what ran before (a resume makes the same choices). Such a step takes
// its examples from the data position exactly as any other step (the data order is unchanged), but
// hands those that are not rationales to `generate` (in the step's order; `step` is the 1-based step
// number), and trains on what it returns instead: the prompts with the student's sampled answers and
// the teacher's top k on the answers' rows (kd_mask; each example needs a teacher and at least one
// kd row, others are dropped; the weight is the example's own). The loss is config.loss's divergence
// on the kd rows alone: the student's sampled tokens are no targets, so there is no cross-entropy
// part and kd_alpha is treated as 1. The step's loss is the weighted mean over the returned examples;
// a step where generate returns nothing trainable is skipped and reported.
//
// Checkpoints are unchanged: the answers are not stored, so an on-policy run resumes bit for bit
// only when `generate` is deterministic given (weights, step): the student's sampling is seeded by
// the step, but the teacher's scores must be deterministic too (a local model is; a remote API may
// not be).
struct OnPolicy {
  double lambda = 0;  // the fraction of on-policy steps, in [0, 1]; 0: off
  std::function<std::vector<Example>(std::span<const Example* const> batch, int64_t step)> generate;
};

// Whether step `step` (1-based) is on-policy: the draw from (seed, step) against lambda.
bool on_policy_step(uint64_t seed, int64_t step, double lambda);

// The data position: the epoch and the index of the next example in its order.
struct DataPosition {
  int64_t epoch = 0;
  int64_t index = 0;
};

class Trainer {
 public:
  // `model` and the example lists must outlive the trainer. `eval` may be empty. Throws
  // orchard::Error for a config that makes no sense (naming the field) or no examples.
  Trainer(Trainable& model, const TrainConfig& config, std::span<const Example> train, std::span<const Example> eval);
  ~Trainer();

  // Runs steps until `until_step` (<= config.steps; 0 or less: config.steps), calling `on_step`
  // after each. A NaN step is skipped and reported; more than max_skipped in a row throws
  // orchard::Error naming the step. When `checkpoint_dir` is not empty, writes a checkpoint there
  // every checkpoint_every steps and at the end of the call.
  void run(int64_t until_step, const std::function<void(const StepReport&)>& on_step,
           const std::string& checkpoint_dir = "");

  // On-policy distillation from the next step on (see OnPolicy). Throws orchard::Error for lambda
  // outside [0, 1], lambda > 0 without generate, or lambda > 0 with --loss ce (no divergence to train).
  void set_on_policy(OnPolicy on_policy);

  // The mean CE over the eval set's CE masks (weighted as in training); NaN without an eval set.
  double evaluate();

  int64_t step() const { return step_; }
  int64_t skipped_steps() const { return skipped_total_; }
  int64_t tokens_seen() const { return tokens_total_; }
  DataPosition position() const { return position_; }
  const TrainConfig& config() const { return config_; }
  const AdamW& optimizer() const { return *adamw_; }

  // The state as files in `dir` (created): params-STEP.f32 and index-STEP.json (names, shapes,
  // offsets), optimizer-STEP.bin (AdamW::save), then state.json naming them with the step, data
  // position, seed and config, each written atomically and state.json last, so a crash leaves the
  // previous checkpoint whole. Older step files are removed after.
  void save_checkpoint(const std::string& dir) const;
  // Restores a checkpoint of a run with the same config (a differing field that changes the result
  // is refused by name; steps too, since the schedule depends on it), the same data (a fingerprint
  // of the examples) and the same parameter names and shapes.
  void restore_checkpoint(const std::string& dir);

  // The config as JSON text (for the checkpoint and the log).
  static std::string config_json(const TrainConfig& config);

 private:
  const std::vector<size_t>& order(int64_t epoch) const;
  std::string data_fingerprint() const;
  std::vector<size_t> next_examples();  // the step's examples, advancing the position
  double example_loss(const Example& e, std::span<const float> logits, std::span<float> dlogits, bool eval_only,
                      bool kd_only = false) const;

  Trainable& model_;
  TrainConfig config_;
  std::span<const Example> train_, eval_;
  LrSchedule schedule_;
  std::unique_ptr<AdamW> adamw_;
  int64_t step_ = 0;
  int64_t skipped_total_ = 0, skipped_in_row_ = 0;
  int64_t tokens_total_ = 0;
  DataPosition position_;
  mutable std::vector<size_t> order_cache_;
  mutable int64_t order_epoch_ = -1;
  OnPolicy on_policy_;
};

}  // namespace orchard::train
