// `orchard train`'s run (apps/orchard/train.cpp) as a function that other commands reuse with
// their own data and per-step work: `orchard distill train` loads a teacher's collected answers and
// logs its teacher metrics at each evaluation, and on-policy distillation installs itself on the
// trainer before the first step.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "orchard/model.h"
#include "train/dataset.h"
#include "train/fast_model.h"
#include "train/trainer.h"

namespace orchard::cli {

// Reads --data or --eval (`path`) into examples for `model`, sequences longer than max_seq refused
// (or cut with truncate).
using TrainDataLoader = std::function<std::vector<train::Example>(const std::string& path, const Model& model,
                                                                  int64_t max_seq, bool truncate)>;

// orchard train's loader: train::load_dataset (docs/training.md's JSONL) with the model's tokenizer,
// or pre-tokenized lines only when the model's tokenizer cannot be loaded.
std::vector<train::Example> load_train_jsonl(const std::string& path, const Model& model, int64_t max_seq,
                                             bool truncate);

// What a hook sees of the run.
struct TrainRun {
  const Model& model;
  train::FastModel& fast;
  train::Trainer& trainer;
  std::span<const train::Example> data, eval;
  int64_t last_step = 0;  // the run's last step (--steps, or --stop-after when it stops earlier)
};

struct TrainHooks {
  std::string name = "orchard train";  // in the run's messages
  // Before the first step (after a --resume's checkpoint is restored).
  std::function<void(train::Trainer&, train::FastModel&, const Model&)> before_run;
  // After each step, before its log.jsonl line is written: may add fields to `line`.
  std::function<void(const TrainRun&, const train::StepReport&, nlohmann::ordered_json& line)> after_step;
};

// Defaults of the loss flags that differ between commands.
struct TrainDefaults {
  std::string loss = "ce";
  double kd_alpha = 1.0;
  double kd_temperature = 2.0;
};

// Reads every `orchard train` flag from `args` (then args.finish(): read a caller's own flags
// before), trains, writes OUT/log.jsonl, OUT/checkpoint and the result (model.gguf, or the adapter
// as PEFT files and adapter.gguf). Returns the exit code.
int run_training(Args& args, const TrainDataLoader& loader, const TrainHooks& hooks,
                 const TrainDefaults& defaults = {});

}  // namespace orchard::cli
