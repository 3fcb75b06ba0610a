#include "train/trainer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"

namespace orchard::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

static_assert(std::endian::native == std::endian::little, "checkpoints hold little-endian float32");

constexpr uint64_t kMaxCheckpointBytes = uint64_t{64} << 30;

void scale(std::span<float> values, double factor) {
  for (float& v : values) v = static_cast<float>(static_cast<double>(v) * factor);
}

bool all_finite(std::span<const float> values) {
  for (float v : values)
    if (!std::isfinite(v)) return false;
  return true;
}

// splitmix64: a well-mixed generator seed from (seed, epoch), so each epoch's order differs.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string step_name(const char* stem, int64_t step, const char* ext) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%08lld.%s", stem, static_cast<long long>(step), ext);
  return buf;
}

void write_file(const fs::path& path, std::string_view bytes) {
  AtomicFile file(path.string());
  file.write(bytes);
  file.commit();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ReferenceTrainable

ReferenceTrainable::ReferenceTrainable(ReferenceModel model, const LoraConfig* lora, uint64_t seed)
    : model_(std::move(model)), lora_enabled_(lora != nullptr) {
  std::vector<NamedTensor> named;
  if (lora_enabled_) {
    lora_ = zero_lora(model_, *lora);
    std::mt19937_64 rng(seed);
    for (LoraAdapter& a : lora_.adapters) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(a.in));
      // 53 random bits to a double in [0, 1): the same numbers on every platform.
      for (double& v : a.a) v = static_cast<double>(static_cast<float>((static_cast<double>(rng() >> 11) * 0x1p-53 * 2 - 1) * bound));
    }
    named = lora_tensors(lora_);
  } else {
    named = named_tensors(model_.params, model_.config);
  }
  values_.reserve(named.size());
  grads_.reserve(named.size());
  for (const NamedTensor& t : named) {
    values_.emplace_back(t.values->begin(), t.values->end());  // rounded to float32: the trained values
    grads_.emplace_back(t.values->size(), 0.0f);
    params_.push_back({.name = t.name, .shape = t.shape, .value = values_.back(), .grad = grads_.back()});
  }
  sync();
}

void ReferenceTrainable::sync() {
  std::vector<NamedTensor> named = lora_enabled_ ? lora_tensors(lora_) : named_tensors(model_.params, model_.config);
  for (size_t i = 0; i < named.size(); ++i)
    for (size_t j = 0; j < values_[i].size(); ++j) (*named[i].values)[j] = values_[i][j];
  if (lora_enabled_) effective_ = lora_effective_model(model_, lora_);
}

void ReferenceTrainable::zero_gradients() {
  for (auto& g : grads_) std::fill(g.begin(), g.end(), 0.0f);
}

Lora ReferenceTrainable::lora() const {
  if (!lora_enabled_) fail("the reference trainable trains every tensor, not LoRA adapters");
  return lora_;
}

double ReferenceTrainable::loss_gradients(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) {
  sync();
  double total = 0;
  if (lora_enabled_) {
    Lora sum = lora_;
    for (auto& a : sum.adapters) std::fill(a.a.begin(), a.a.end(), 0.0), std::fill(a.b.begin(), a.b.end(), 0.0);
    for (size_t s = 0; s < sequences.size(); ++s) {
      Lora g;
      total += lora_loss_gradients(
          model_, lora_, sequences[s],
          [&](std::span<const float> logits, std::span<float> dlogits) { return loss(s, logits, dlogits); }, g);
      for (size_t i = 0; i < g.adapters.size(); ++i) {
        for (size_t j = 0; j < g.adapters[i].a.size(); ++j) sum.adapters[i].a[j] += g.adapters[i].a[j];
        for (size_t j = 0; j < g.adapters[i].b.size(); ++j) sum.adapters[i].b[j] += g.adapters[i].b[j];
      }
    }
    std::vector<NamedTensor> named = lora_tensors(sum);
    for (size_t i = 0; i < named.size(); ++i)
      for (size_t j = 0; j < grads_[i].size(); ++j) grads_[i][j] += static_cast<float>((*named[i].values)[j]);
    return total;
  }
  ReferenceParams g = zeros_like(model_.params);
  for (size_t s = 0; s < sequences.size(); ++s)
    total += reference_loss_gradients(
        model_, sequences[s], [&](std::span<const float> logits, std::span<float> dlogits) { return loss(s, logits, dlogits); },
        g);
  std::vector<NamedTensor> named = named_tensors(g, model_.config);
  for (size_t i = 0; i < named.size(); ++i)
    for (size_t j = 0; j < grads_[i].size(); ++j) grads_[i][j] += static_cast<float>((*named[i].values)[j]);
  return total;
}

double ReferenceTrainable::loss_only(std::span<const std::vector<int32_t>> sequences, const BatchLoss& loss) {
  sync();
  const ReferenceModel& m = lora_enabled_ ? effective_ : model_;
  double total = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    Activations acts;
    reference_forward(m, sequences[s], acts);
    const std::vector<float> logits(acts.logits.begin(), acts.logits.end());
    std::vector<float> dlogits(logits.size());
    total += loss(s, logits, dlogits);
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Config

LossKind parse_loss_kind(const std::string& name) {
  if (name == "ce") return LossKind::ce;
  if (name == "kd") return LossKind::kd;
  if (name == "rkl") return LossKind::rkl;
  if (name == "jsd") return LossKind::jsd;
  fail("--loss ", name, ": expected ce, kd, rkl or jsd");
}

const char* loss_kind_name(LossKind kind) {
  switch (kind) {
    case LossKind::ce: return "ce";
    case LossKind::kd: return "kd";
    case LossKind::rkl: return "rkl";
    case LossKind::jsd: return "jsd";
  }
  return "?";
}

std::string Trainer::config_json(const TrainConfig& c) {
  ordered_json j = {{"loss", loss_kind_name(c.loss)},
                    {"kd_alpha", c.kd_alpha},
                    {"temperature", c.temperature},
                    {"jsd_beta", c.jsd_beta},
                    {"rationale_weight", c.rationale_weight},
                    {"steps", c.steps},
                    {"batch_tokens", c.batch_tokens},
                    {"accumulate", c.accumulate},
                    {"lr", c.lr},
                    {"min_lr", c.min_lr},
                    {"warmup", c.warmup},
                    {"weight_decay", c.weight_decay},
                    {"clip", c.clip},
                    {"seed", c.seed},
                    {"eval_every", c.eval_every},
                    {"max_skipped", c.max_skipped},
                    {"checkpoint_every", c.checkpoint_every}};
  return j.dump();
}

Trainer::Trainer(Trainable& model, const TrainConfig& config, std::span<const Example> train,
                 std::span<const Example> eval)
    : model_(model), config_(config), train_(train), eval_(eval) {
  const TrainConfig& c = config_;
  if (train_.empty()) fail("training: no examples");
  if (c.steps < 1) fail("training: --steps ", c.steps, " (need at least 1)");
  if (c.batch_tokens < 1) fail("training: --batch-tokens ", c.batch_tokens, " (need at least 1)");
  if (c.accumulate < 1) fail("training: --accumulate ", c.accumulate, " (need at least 1)");
  if (!(c.kd_alpha >= 0 && c.kd_alpha <= 1)) fail("training: --kd-alpha ", c.kd_alpha, " is not in [0, 1]");
  if (!(c.temperature > 0) || !std::isfinite(c.temperature)) fail("training: --kd-temperature ", c.temperature, " is not > 0");
  if (!(c.jsd_beta >= 0 && c.jsd_beta <= 1)) fail("training: --jsd-beta ", c.jsd_beta, " is not in [0, 1]");
  if (!(c.rationale_weight > 0) || !std::isfinite(c.rationale_weight))
    fail("training: --rationale-weight ", c.rationale_weight, " is not > 0");
  if (!(c.clip >= 0) && !(c.clip <= 0)) fail("training: --clip is NaN");
  if (c.eval_every < 0 || c.checkpoint_every < 0 || c.max_skipped < 0)
    fail("training: --eval-every, --checkpoint-every and the skip limit must be >= 0");
  schedule_ = {.peak_lr = c.lr, .min_lr = c.min_lr, .warmup_steps = c.warmup, .total_steps = c.steps};
  schedule_.at(0);  // refuses a bad schedule now, naming it
  if (c.loss != LossKind::ce) {
    bool any = false;
    for (const Example& e : train_) any = any || e.has_teacher();
    if (!any) fail("training: --loss ", loss_kind_name(c.loss), " needs a teacher's top k in the data, and no line has one");
  }
  if (c.loss == LossKind::rkl)  // log(r/p) is infinite where p = 0: refuse such data now, by line
    for (const Example& e : train_)
      for (int64_t i = 0; i < e.size() && e.has_teacher(); ++i)
        for (int64_t j = 0; j < e.teacher_k && e.kd_mask[i]; ++j)
          if (e.teacher_probs[i * e.teacher_k + j] <= 0)
            fail("training: line ", e.line, ": a teacher probability is 0 (its log-probability is far below the row's "
                 "largest), where reverse KL is infinite; drop that id or use --loss kd or jsd");
  adamw_ = std::make_unique<AdamW>(AdamWConfig{.lr = c.lr, .weight_decay = c.weight_decay}, model_.parameters());
}

Trainer::~Trainer() = default;

const std::vector<size_t>& Trainer::order(int64_t epoch) const {
  if (order_epoch_ == epoch) return order_cache_;
  std::vector<size_t> out(train_.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = i;
  std::mt19937_64 rng(mix(config_.seed ^ mix(static_cast<uint64_t>(epoch))));
  for (size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng() % i]);
  order_cache_ = std::move(out);
  order_epoch_ = epoch;
  return order_cache_;
}

std::vector<size_t> Trainer::next_examples() {
  std::vector<size_t> out;
  const int64_t n = static_cast<int64_t>(train_.size());
  for (int64_t m = 0; m < config_.accumulate; ++m) {
    int64_t tokens = 0;
    bool first = true;
    if (position_.index == n) position_ = {.epoch = position_.epoch + 1, .index = 0};
    while (position_.index < n) {  // a micro-batch ends with its epoch: no example twice in one
      const size_t e = order(position_.epoch)[position_.index];
      if (!first && tokens + train_[e].size() > config_.batch_tokens) break;
      out.push_back(e);
      tokens += train_[e].size();
      first = false;
      ++position_.index;
    }
    out.push_back(SIZE_MAX);  // the end of a micro-batch
  }
  return out;
}

double Trainer::example_loss(const Example& e, std::span<const float> logits, std::span<float> dlogits,
                             bool eval_only, bool kd_only) const {
  const int64_t T = e.size(), V = static_cast<int64_t>(logits.size()) / T;
  if (!kd_only && (eval_only || config_.loss == LossKind::ce || !e.has_teacher()))
    return cross_entropy(logits, T, V, e.targets, e.ce_mask, dlogits);
  const KdOptions kd{.divergence = config_.loss == LossKind::kd    ? Divergence::forward_kl
                                   : config_.loss == LossKind::rkl ? Divergence::reverse_kl
                                                                   : Divergence::jsd,
                     .temperature = config_.temperature,
                     .beta = config_.jsd_beta};
  if (kd_only) return distill_loss(logits, T, V, e.teacher(), kd, e.kd_mask, dlogits);  // on-policy: alpha = 1
  return distill_mix(logits, T, V, config_.kd_alpha, e.teacher(), kd, e.kd_mask, e.targets, e.ce_mask, dlogits);
}

double Trainer::evaluate() {
  if (eval_.empty()) return std::nan("");
  double weight = 0, total = 0;
  for (const Example& e : eval_) weight += e.weight * (e.rationale ? config_.rationale_weight : 1.0);
  size_t begin = 0;
  while (begin < eval_.size()) {
    size_t end = begin;
    int64_t tokens = 0;
    std::vector<std::vector<int32_t>> seqs;
    while (end < eval_.size() && (end == begin || tokens + eval_[end].size() <= config_.batch_tokens)) {
      tokens += eval_[end].size();
      seqs.push_back(eval_[end++].tokens);
    }
    total += model_.loss_only(seqs, [&](size_t i, std::span<const float> logits, std::span<float>) {
      const Example& e = eval_[begin + i];
      const double w = e.weight * (e.rationale ? config_.rationale_weight : 1.0) / weight;
      if (!all_finite(logits)) return std::nan("");
      return w * example_loss(e, logits, {}, true);
    });
    begin = end;
  }
  return total;
}

bool on_policy_step(uint64_t seed, int64_t step, double lambda) {
  if (!(lambda > 0)) return false;
  // Salted apart from the data order's (seed, epoch) stream; 53 bits to a double in [0, 1).
  const uint64_t draw = mix(mix(seed ^ 0x6f6e2d706f6c6963ull) ^ static_cast<uint64_t>(step));
  return static_cast<double>(draw >> 11) * 0x1p-53 < lambda;
}

void Trainer::set_on_policy(OnPolicy on_policy) {
  if (!(on_policy.lambda >= 0 && on_policy.lambda <= 1))
    fail("training: the on-policy fraction (lambda) ", on_policy.lambda, " is not in [0, 1]");
  if (on_policy.lambda > 0 && !on_policy.generate) fail("training: on-policy steps (lambda > 0) need a generator");
  if (on_policy.lambda > 0 && config_.loss == LossKind::ce)
    fail("training: on-policy distillation needs --loss kd, rkl or jsd (the teacher scores the student's own answers; "
         "there are no targets for cross-entropy)");
  on_policy_ = std::move(on_policy);
}

void Trainer::run(int64_t until_step, const std::function<void(const StepReport&)>& on_step,
                  const std::string& checkpoint_dir) {
  const int64_t last = until_step <= 0 ? config_.steps : std::min(until_step, config_.steps);
  std::span<Parameter> params = model_.parameters();
  while (step_ < last) {
    const auto start = std::chrono::steady_clock::now();
    StepReport report;
    report.step = step_ + 1;
    report.lr = schedule_.at(step_);
    report.on_policy = on_policy_step(config_.seed, report.step, on_policy_.lambda);
    // The step's examples as micro-batches, each ended by nullptr. The data position advances the
    // same way on an on-policy step, so the data order does not depend on which steps were.
    const std::vector<size_t> picked = next_examples();
    std::vector<Example> generated;  // an on-policy step's examples (kept alive for the step)
    std::vector<const Example*> batch;
    std::string reason;
    if (!report.on_policy) {
      for (size_t e : picked) batch.push_back(e == SIZE_MAX ? nullptr : &train_[e]);
    } else {
      std::vector<const Example*> prompts;
      for (size_t e : picked)
        if (e != SIZE_MAX && !train_[e].rationale) prompts.push_back(&train_[e]);
      if (!prompts.empty()) {
        try {
          generated = on_policy_.generate(prompts, report.step);
        } catch (const Error& e) {
          fail("step ", report.step, " (on-policy): ", e.what());
        }
      }
      // Re-packed into micro-batches by --batch-tokens (the answers make them longer than the prompts).
      int64_t tokens = 0;
      for (const Example& e : generated) {
        if (e.ce_mask.size() != e.tokens.size() || e.kd_mask.size() != e.tokens.size() ||
            e.targets.size() != e.tokens.size() ||
            e.teacher_ids.size() != e.tokens.size() * static_cast<size_t>(std::max<int64_t>(e.teacher_k, 0)) ||
            e.teacher_probs.size() != e.teacher_ids.size())
          fail("step ", report.step, " (on-policy): a generated example's rows disagree in length");
        if (!e.has_teacher() || std::find(e.kd_mask.begin(), e.kd_mask.end(), 1) == e.kd_mask.end()) continue;
        if (!batch.empty() && tokens + e.size() > config_.batch_tokens) {
          batch.push_back(nullptr);
          tokens = 0;
        }
        batch.push_back(&e);
        tokens += e.size();
      }
      if (!batch.empty()) batch.push_back(nullptr);
      if (batch.empty())
        reason = prompts.empty() ? "on-policy: the step's examples are all rationales (not sent to the generator)"
                                 : "on-policy: no generated answer has a teacher row";
    }
    double weight = 0;
    for (const Example* e : batch)
      if (e) weight += e->weight * (e->rationale ? config_.rationale_weight : 1.0);
    model_.zero_gradients();
    double loss = 0;
    std::vector<const Example*> micro;
    for (const Example* e : batch) {
      if (e) {
        micro.push_back(e);
        report.tokens += e->size();
        continue;
      }
      std::vector<std::vector<int32_t>> seqs;
      for (const Example* m : micro) seqs.push_back(m->tokens);
      loss += model_.loss_gradients(seqs, [&](size_t i, std::span<const float> logits, std::span<float> dlogits) {
        const Example& ex = *micro[i];
        if (!all_finite(logits)) {
          if (reason.empty()) reason = str_cat("non-finite logits on the example of line ", ex.line);
          std::fill(dlogits.begin(), dlogits.end(), 0.0f);
          return std::nan("");
        }
        const double w = ex.weight * (ex.rationale ? config_.rationale_weight : 1.0) / weight;
        double l = 0;
        try {
          l = example_loss(ex, logits, dlogits, false, report.on_policy);
        } catch (const Error& e) {
          fail("step ", step_ + 1, ", the ", report.on_policy ? "on-policy answer to the " : "", "example of line ", ex.line,
               ": ", e.what());
        }
        scale(dlogits, w);
        return w * l;
      });
      micro.clear();
    }
    if (batch.empty()) loss = std::nan("");
    report.loss = loss;
    if (reason.empty() && !std::isfinite(loss)) reason = str_cat("the loss is ", loss);
    if (reason.empty()) {
      double sq = 0;
      for (const Parameter& p : params)
        for (float g : p.grad) sq += static_cast<double>(g) * g;
      report.grad_norm = std::sqrt(sq);
      if (!std::isfinite(report.grad_norm)) reason = "a gradient is not finite";
    }
    if (reason.empty()) {
      try {
        if (config_.clip > 0) clip_grad_norm(params, config_.clip);
        adamw_->step(params, report.lr);
      } catch (const Error& e) {
        reason = e.what();
      }
    }
    ++step_;
    tokens_total_ += report.tokens;
    if (!reason.empty()) {
      model_.zero_gradients();
      report.skipped = true;
      report.skip_reason = reason;
      ++skipped_total_;
      ++skipped_in_row_;
    } else {
      skipped_in_row_ = 0;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!eval_.empty() && ((config_.eval_every > 0 && step_ % config_.eval_every == 0) || step_ == config_.steps)) {
      report.evaluated = true;
      report.eval_loss = evaluate();
    }
    if (on_step) on_step(report);
    if (skipped_in_row_ > config_.max_skipped)
      fail("training stopped at step ", step_, ": ", skipped_in_row_, " steps in a row were skipped (last: ", reason, ")");
    if (!checkpoint_dir.empty() && config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0 && step_ < last)
      save_checkpoint(checkpoint_dir);
  }
  if (!checkpoint_dir.empty()) save_checkpoint(checkpoint_dir);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

// The training examples in brief: their count and an FNV-1a hash of their tokens, masks and
// weights, so that a resume on other data (whose order would differ) is refused.
std::string Trainer::data_fingerprint() const {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto add = [&](const void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < size; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  };
  for (const Example& e : train_) {
    add(e.tokens.data(), e.tokens.size() * sizeof(int32_t));
    add(e.ce_mask.data(), e.ce_mask.size());
    add(e.kd_mask.data(), e.kd_mask.size());
    add(e.teacher_ids.data(), e.teacher_ids.size() * sizeof(int32_t));
    add(e.teacher_probs.data(), e.teacher_probs.size() * sizeof(float));
    add(&e.weight, sizeof e.weight);
    const uint8_t r = e.rationale;
    add(&r, 1);
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%zu examples, fnv1a %016llx", train_.size(), static_cast<unsigned long long>(h));
  return buf;
}

void Trainer::save_checkpoint(const std::string& dir_name) const {
  const fs::path dir(dir_name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir_name, ": cannot create the checkpoint folder (", ec.message(), ")");
  std::span<Parameter> params = model_.parameters();
  ordered_json index = ordered_json::array();
  std::string bytes;
  for (const Parameter& p : params) {
    index.push_back({{"name", p.name}, {"shape", p.shape}, {"offset", bytes.size()}, {"n_elements", p.value.size()}});
    bytes.append(reinterpret_cast<const char*>(p.value.data()), p.value.size() * sizeof(float));
  }
  const std::string params_file = step_name("params", step_, "f32");
  const std::string index_file = step_name("index", step_, "json");
  const std::string optimizer_file = step_name("optimizer", step_, "bin");
  write_file(dir / params_file, bytes);
  write_file(dir / index_file, index.dump(1));
  const std::vector<uint8_t> adam = adamw_->save();
  write_file(dir / optimizer_file, std::string_view(reinterpret_cast<const char*>(adam.data()), adam.size()));
  const ordered_json state = {{"format", "orchard-train-checkpoint"},
                              {"version", 1},
                              {"step", step_},
                              {"epoch", position_.epoch},
                              {"index", position_.index},
                              {"seed", config_.seed},
                              {"skipped_total", skipped_total_},
                              {"skipped_in_row", skipped_in_row_},
                              {"tokens", tokens_total_},
                              {"data", data_fingerprint()},
                              {"params", params_file},
                              {"params_index", index_file},
                              {"optimizer", optimizer_file},
                              {"config", ordered_json::parse(config_json(config_))}};
  write_file(dir / "state.json", state.dump(1));
  // The previous steps' files: state.json no longer names them.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if ((name.starts_with("params-") || name.starts_with("index-") || name.starts_with("optimizer-")) &&
        name != params_file && name != index_file && name != optimizer_file)
      fs::remove(entry.path(), ec);
  }
}

void Trainer::restore_checkpoint(const std::string& dir_name) {
  const fs::path dir(dir_name);
  const std::string state_path = (dir / "state.json").string();
  const ordered_json state = parse_json<ordered_json>(read_text_file(state_path, kMaxJsonFileBytes), state_path);
  try {
    if (state.at("format") != "orchard-train-checkpoint" || state.at("version") != 1)
      fail(state_path, ": not an Orchard training checkpoint of version 1");
    const ordered_json saved = state.at("config");
    const ordered_json now = ordered_json::parse(config_json(config_));
    for (const auto& [key, value] : now.items()) {
      if (key == "checkpoint_every" || key == "eval_every" || key == "max_skipped") continue;  // not part of the result
      if (!saved.contains(key) || saved[key] != value)
        fail(state_path, ": the checkpoint was trained with ", key, " = ", saved.contains(key) ? saved[key].dump() : "(none)",
             ", this run has ", value.dump(), " (resume with the same settings)");
    }
    if (state.at("data").get<std::string>() != data_fingerprint())
      fail(state_path, ": the checkpoint was trained on other data (", state.at("data").get<std::string>(), ", this run's is ",
           data_fingerprint(), "): resume with the same data file");
    const int64_t step = state.at("step").get<int64_t>();
    const int64_t epoch = state.at("epoch").get<int64_t>(), index = state.at("index").get<int64_t>();
    if (step < 0 || step > config_.steps || epoch < 0 || index < 0 || index > static_cast<int64_t>(train_.size()))
      fail(state_path, ": step ", step, ", epoch ", epoch, ", index ", index, " do not fit this run (",
           train_.size(), " examples, ", config_.steps, " steps)");
    const std::string index_path = (dir / state.at("params_index").get<std::string>()).string();
    const ordered_json layout = parse_json<ordered_json>(read_text_file(index_path, kMaxTextFileBytes), index_path);
    const std::string params_bytes = read_text_file((dir / state.at("params").get<std::string>()).string(), kMaxCheckpointBytes);
    std::span<Parameter> params = model_.parameters();
    if (!layout.is_array() || layout.size() != params.size())
      fail(index_path, ": ", layout.size(), " tensors, the model trains ", params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const ordered_json& t = layout[i];
      const uint64_t offset = t.at("offset").get<uint64_t>(), count = t.at("n_elements").get<uint64_t>();
      if (t.at("name").get<std::string>() != params[i].name || t.at("shape").get<std::vector<int64_t>>() != params[i].shape ||
          count != params[i].value.size())
        fail(index_path, ": tensor ", i, " is ", t.at("name").get<std::string>(), ", the model's is ", params[i].name,
             " (or the shapes differ)");
      if (offset > params_bytes.size() || count * 4 > params_bytes.size() - offset)
        fail(index_path, ": tensor ", params[i].name, " lies past the end of the parameter file");
      std::memcpy(params[i].value.data(), params_bytes.data() + offset, count * 4);
    }
    const std::string adam = read_text_file((dir / state.at("optimizer").get<std::string>()).string(), kMaxCheckpointBytes);
    AdamW restored = AdamW::restore(std::span(reinterpret_cast<const uint8_t*>(adam.data()), adam.size()));
    if (restored.size() != params.size()) fail(state_path, ": the optimizer state has ", restored.size(), " tensors");
    for (size_t i = 0; i < params.size(); ++i)
      if (restored.name(i) != params[i].name) fail(state_path, ": the optimizer state's tensor ", i, " is ", restored.name(i));
    adamw_ = std::make_unique<AdamW>(std::move(restored));
    step_ = step;
    position_ = {.epoch = epoch, .index = index};
    skipped_total_ = state.at("skipped_total").get<int64_t>();
    skipped_in_row_ = state.at("skipped_in_row").get<int64_t>();
    tokens_total_ = state.at("tokens").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(state_path, ": a bad checkpoint (", e.what(), ")");
  }
  model_.zero_gradients();
}

}  // namespace orchard::train
