// orchard train check --manifest FILE --case NAME --out GRADS.f32 [--kernels reference|fast]
//
// Runs one case of a gradient manifest laid out like shared/train/manifest.json (issue 17) on the
// trainer's reference path (or, with --kernels fast, its fast path: FastModel) and writes the result in the manifest's own file layout (the case's
// tensors at their offsets, float32 little-endian), so that the file can be diffed against the
// oracle or against any other framework. Kinds: sft and kd (every tensor of the model; tensors
// with no gradient, such as the constant rope_freqs, are written as zeros), lora (the adapter
// gradients at the stored init adapters) and adamw (one step from the stored sft gradient:
// .updated, .exp_avg, .exp_avg_sq). Model paths in the manifest are relative to the folder that
// holds the manifest's folder; data files (init adapters, gradients) to the manifest's folder.
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include "base/error.h"
#include "command.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "progress.h"
#include "train_run.h"
#include "train/adapter_io.h"
#include "train/dataset.h"
#include "train/fast_model.h"
#include "train/lora.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/reference_model.h"
#include "train/trainer.h"

namespace orchard::cli {
namespace {

// The model's tokenizer for the data; a model without a usable one (the golden test models) can
// still train on pre-tokenized {"tokens": [...]} lines.
train::DataTokenizer data_tokenizer_of(const Model& model) {
  try {
    return train::data_tokenizer(load_model_tokenizer(model));
  } catch (const Error& e) {
    return train::token_ids_only(model.config().n_vocab, e.what());
  }
}

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxManifestBytes = 256ull << 20;
constexpr uint64_t kMaxOutputBytes = 4ull << 30;

static_assert(std::endian::native == std::endian::little, "the float32 files are little-endian");

json read_manifest(const std::string& path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) fail(path, ": cannot read the manifest (", ec.message(), ")");
  if (size > kMaxManifestBytes) fail(path, ": the manifest is ", size, " bytes, above the limit of ", kMaxManifestBytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open the manifest");
  std::stringstream text;
  text << in.rdbuf();
  json manifest = json::parse(text.str(), nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object()) fail(path, ": not a JSON object");
  if (!manifest.contains("cases") || !manifest["cases"].is_array()) fail(path, ": no \"cases\" list");
  return manifest;
}

// A tensor entry of the manifest: name, offset (bytes, a multiple of 4) and element count.
struct Entry {
  std::string name;
  uint64_t offset = 0, count = 0;
};

std::vector<Entry> entries(const json& list, const std::string& what) {
  if (!list.is_array() || list.empty()) fail(what, ": no tensor list");
  std::vector<Entry> out;
  for (const json& t : list) {
    Entry e{.name = t.at("name").get<std::string>(), .offset = t.at("offset").get<uint64_t>(),
            .count = t.at("n_elements").get<uint64_t>()};
    if (e.offset % 4 != 0 || e.offset > kMaxOutputBytes || e.count > kMaxOutputBytes / 4 ||
        e.offset + 4 * e.count > kMaxOutputBytes)
      fail(what, ": tensor ", e.name, " has a bad offset or size");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<float> read_floats(const std::string& path, const Entry& e) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) fail(path, ": cannot read (", ec.message(), ")");
  if (e.offset + 4 * e.count > size) fail(path, ": tensor ", e.name, " lies past the end of the file");
  std::ifstream in(path, std::ios::binary);
  std::vector<float> out(e.count);
  in.seekg(static_cast<std::streamoff>(e.offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(4 * e.count));
  if (!in) fail(path, ": cannot read tensor ", e.name);
  return out;
}

// The result file: each entry's values at its offset.
class Output {
 public:
  explicit Output(const std::vector<Entry>& layout) : layout_(layout) {
    uint64_t end = 0;
    for (const Entry& e : layout) end = std::max(end, e.offset + 4 * e.count);
    bytes_.assign(end / 4, 0.0f);
  }
  template <typename T>
  void put(const Entry& e, const std::vector<T>& values) {
    if (values.size() != e.count) fail("tensor ", e.name, ": ", values.size(), " values, the manifest says ", e.count);
    for (uint64_t i = 0; i < e.count; ++i) bytes_[e.offset / 4 + i] = static_cast<float>(values[i]);
  }
  void write(const std::string& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes_.data()), static_cast<std::streamsize>(bytes_.size() * 4));
    if (!out) fail(path, ": cannot write the result");
  }

 private:
  std::vector<Entry> layout_;
  std::vector<float> bytes_;
};

// Puts every entry that `named` has; returns the names it lacked (written as zeros).
std::vector<std::string> put_named(Output& out, const std::vector<Entry>& layout,
                                   const std::vector<train::NamedTensor>& named) {
  std::map<std::string, const std::vector<double>*> by_name;
  for (const auto& t : named) by_name[t.name] = t.values;
  std::vector<std::string> missing;
  for (const Entry& e : layout) {
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      missing.push_back(e.name);
      continue;
    }
    out.put(e, *it->second);
  }
  return missing;
}

// Puts the gradient of every parameter the layout names; returns the names it lacked.
std::vector<std::string> put_params(Output& out, const std::vector<Entry>& layout, std::span<const train::Parameter> params) {
  std::map<std::string, const train::Parameter*> by_name;
  for (const auto& p : params) by_name[p.name] = &p;
  std::vector<std::string> missing;
  for (const Entry& e : layout) {
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      missing.push_back(e.name);
      continue;
    }
    out.put(e, std::vector<float>(it->second->grad.begin(), it->second->grad.end()));
  }
  return missing;
}

int train_check(Args& args) {
  const std::string manifest_path = args.require("manifest");
  const std::string case_name = args.require("case");
  const std::string out_path = args.require("out");
  const std::string kernels = args.get_or("kernels", "reference");
  args.finish();
  if (kernels != "reference" && kernels != "fast") fail("--kernels ", kernels, ": expected reference or fast");
  const bool fast = kernels == "fast";

  const json manifest = read_manifest(manifest_path);
  const fs::path data_dir = fs::absolute(manifest_path).parent_path();
  const fs::path root = data_dir.parent_path();
  const json* found = nullptr;
  for (const json& c : manifest["cases"])
    if (c.is_object() && c.value("case", "") == case_name) found = &c;
  if (!found) fail(manifest_path, ": no case named '", case_name, "'");
  const json& c = *found;
  const std::string kind = c.at("kind").get<std::string>();
  const std::string where = manifest_path + " case " + case_name;

  const std::string model_path = (root / c.at("model").get<std::string>()).string();
  const train::ReferenceModel model = train::load_reference_model(model_path);
  // The fast path reads the weights as stored: no packed copy.
  std::shared_ptr<const Model> engine_model;
  if (fast && kind != "adamw") engine_model = Model::load(model_path, {.kernels = KernelChoice::reference});

  if (kind == "adamw") {
    // The stored sft gradient of the same model, as the oracle's inputs say.
    const std::string grad_name = c.at("inputs").at("gradients").get<std::string>();
    const std::string grad_file = grad_name.substr(0, grad_name.find(' '));
    const json* sft = nullptr;
    for (const json& other : manifest["cases"])
      if (other.is_object() && other.value("grad_file", "") == grad_file) sft = &other;
    if (!sft) fail(where, ": no case has the gradient file ", grad_file);
    std::map<std::string, Entry> grad_entries;
    for (const Entry& e : entries(sft->at("tensors"), where)) grad_entries[e.name] = e;
    const json& h = c.at("hyperparameters");
    const train::AdamWConfig config{.lr = h.at("lr").get<double>(), .beta1 = h.at("beta1").get<double>(),
                                    .beta2 = h.at("beta2").get<double>(), .eps = h.at("eps").get<double>(),
                                    .weight_decay = h.at("weight_decay").get<double>()};
    if (h.value("step", 1) != 1) fail(where, ": only step 1 is supported");
    train::ReferenceParams params = model.params;
    std::map<std::string, train::NamedTensor> weights;
    for (const auto& t : train::named_tensors(params, model.config)) weights[t.name] = t;
    const auto chosen = c.at("chosen_tensors").get<std::vector<std::string>>();
    std::vector<std::vector<float>> values, grads;
    std::vector<train::Parameter> list;
    values.reserve(chosen.size()), grads.reserve(chosen.size());
    for (const std::string& name : chosen) {
      auto w = weights.find(name);
      auto g = grad_entries.find(name);
      if (w == weights.end() || g == grad_entries.end()) fail(where, ": no weight or gradient for ", name);
      values.emplace_back(w->second.values->begin(), w->second.values->end());
      grads.push_back(read_floats((data_dir / grad_file).string(), g->second));
      list.push_back({.name = name, .shape = w->second.shape, .value = values.back(), .grad = grads.back()});
    }
    train::AdamW adamw(config, list);
    adamw.step(list);
    const std::vector<Entry> layout = entries(c.at("tensors"), where);
    Output out(layout);
    for (const Entry& e : layout)
      for (size_t i = 0; i < chosen.size(); ++i) {
        const auto as_vector = [](std::span<const float> s) { return std::vector<float>(s.begin(), s.end()); };
        if (e.name == chosen[i] + ".updated") out.put(e, values[i]);
        else if (e.name == chosen[i] + ".exp_avg") out.put(e, as_vector(adamw.exp_avg(i)));
        else if (e.name == chosen[i] + ".exp_avg_sq") out.put(e, as_vector(adamw.exp_avg_sq(i)));
      }
    out.write(out_path);
    std::printf("%s: adamw step %lld over %zu tensors (lr %g, weight decay %g) written to %s\n", case_name.c_str(),
                static_cast<long long>(adamw.steps_taken()), chosen.size(), config.lr, config.weight_decay,
                out_path.c_str());
    return 0;
  }

  const std::vector<int32_t> tokens = c.at("tokens").get<std::vector<int32_t>>();
  if (tokens.empty() || tokens.size() > 65536) fail(where, ": ", tokens.size(), " tokens (1 to 65536)");
  const int64_t n = static_cast<int64_t>(tokens.size()), V = model.config.n_vocab;
  std::vector<int32_t> targets;
  std::vector<uint8_t> mask;
  train::sft_targets(tokens, targets, mask);
  const train::LogitLoss ce = [&](std::span<const float> logits, std::span<float> dlogits) {
    return train::cross_entropy(logits, n, V, targets, mask, dlogits);
  };
  const std::vector<Entry> layout = entries(c.at("tensors"), where);
  Output out(layout);
  double loss = 0;
  std::vector<std::string> missing;
  // The fast path on one sequence: its parameters' gradients, put by name.
  const auto run_fast = [&](train::FastModel& f, const train::LogitLoss& logit_loss) {
    f.zero_gradients();
    const std::vector<std::vector<int32_t>> seqs = {tokens};
    loss = f.loss_gradients(seqs, [&](size_t, std::span<const float> logits, std::span<float> dlogits) {
      return logit_loss(logits, dlogits);
    });
    missing = put_params(out, layout, f.parameters());
  };
  if (kind == "sft" || kind == "kd") {
    train::ReferenceParams grads = train::zeros_like(model.params);
    std::unique_ptr<train::FastModel> f;
    if (fast) f = std::make_unique<train::FastModel>(*engine_model, train::FastModelOptions{.kernels = KernelChoice::fast});
    if (kind == "sft") {
      if (f) run_fast(*f, ce);
      else loss = train::reference_loss_gradients(model, tokens, ce, grads);
    } else {
      const double T = manifest.at("hyperparameters").at("kd_temperature").get<double>();
      const int64_t k = manifest.at("hyperparameters").at("kd_top_k").get<int64_t>();
      std::vector<int32_t> ids;
      std::vector<float> probs;
      for (const json& row : c.at("teacher_topk_ids")) for (int32_t id : row.get<std::vector<int32_t>>()) ids.push_back(id);
      for (const json& row : c.at("teacher_topk_probs"))
        for (double p : row.get<std::vector<double>>()) probs.push_back(static_cast<float>(p));
      if (k < 1 || static_cast<int64_t>(ids.size()) != n * k || probs.size() != ids.size())
        fail(where, ": the teacher's top-k lists are not ", n, " x ", k);
      const train::TeacherTopK teacher{.k = k, .ids = ids, .probs = probs};
      const train::LogitLoss kd = [&](std::span<const float> logits, std::span<float> dlogits) {
        return train::distill_loss(logits, n, V, teacher, {.divergence = train::Divergence::forward_kl, .temperature = T},
                                   {}, dlogits);
      };
      if (f) run_fast(*f, kd);
      else loss = train::reference_loss_gradients(model, tokens, kd, grads);
    }
    if (!f) missing = put_named(out, layout, train::named_tensors(grads, model.config));
  } else if (kind == "lora") {
    const json& cfg = c.at("lora");
    train::LoraConfig config;
    config.rank = cfg.at("rank").get<int64_t>();
    config.alpha = cfg.at("alpha").get<double>();
    config.targets.clear();
    for (const std::string& t : cfg.at("targets").get<std::vector<std::string>>()) {
      // "blk.*.attn_q.weight" -> the projection.
      const std::map<std::string, std::string> names = {{"attn_q", "q"}, {"attn_k", "k"},       {"attn_v", "v"},
                                                        {"attn_output", "o"}, {"ffn_gate", "gate"}, {"ffn_up", "up"},
                                                        {"ffn_down", "down"}};
      const size_t a = t.find('.'), b = t.rfind(".weight");
      const std::string proj = (a != std::string::npos && b != std::string::npos && b > a + 3) ? t.substr(a + 3, b - a - 3) : t;
      auto it = names.find(proj);
      if (it == names.end()) fail(where, ": unknown LoRA target ", t);
      config.targets.push_back(train::parse_lora_target(it->second));
    }
    train::Lora lora = train::zero_lora(model, config);
    std::map<std::string, train::NamedTensor> adapters;
    for (const auto& t : train::lora_tensors(lora)) adapters[t.name] = t;
    const std::string init_file = (data_dir / cfg.at("init_file").get<std::string>()).string();
    const std::vector<Entry> init = entries(cfg.at("init_tensors"), where);
    if (init.size() != adapters.size()) fail(where, ": ", init.size(), " init tensors for ", adapters.size(), " adapters");
    for (const Entry& e : init) {
      auto it = adapters.find(e.name);
      if (it == adapters.end() || it->second.values->size() != e.count) fail(where, ": init tensor ", e.name, " fits no adapter");
      const std::vector<float> v = read_floats(init_file, e);
      std::copy(v.begin(), v.end(), it->second.values->begin());
    }
    if (fast) {
      train::FastModel f(*engine_model, {.kernels = KernelChoice::fast, .lora_rank = config.rank,
                                         .lora_alpha = config.alpha, .lora_targets = config.targets});
      f.set_lora(lora);
      run_fast(f, ce);
    } else {
      train::Lora grads;
      loss = train::lora_loss_gradients(model, lora, tokens, ce, grads);
      missing = put_named(out, layout, train::lora_tensors(grads));
    }
  } else {
    fail(where, ": unknown kind '", kind, "' (expected sft, kd, lora or adamw)");
  }
  out.write(out_path);
  std::printf("%s: %s loss %.10f", case_name.c_str(), kind.c_str(), loss);
  if (c.contains("loss") && c["loss"].is_number()) {
    const double ref = c["loss"].get<double>();
    std::printf(" (manifest %.10f, rel %.2e)", ref, std::fabs(loss - ref) / std::fabs(ref));
  }
  std::printf("; %zu tensors written to %s\n", layout.size() - missing.size(), out_path.c_str());
  for (const std::string& name : missing) std::fprintf(stderr, "note: %s has no gradient here (written as zeros)\n", name.c_str());
  return 0;
}

const RegisterCommand kCheck("train check", "run a gradient-manifest case on the reference or fast trainer; write its result file",
                             train_check);

// ---------------------------------------------------------------------------------------------
// orchard train: the training run.

std::vector<train::LoraTarget> parse_targets(const std::string& list) {
  std::vector<train::LoraTarget> out;
  size_t begin = 0;
  while (begin <= list.size()) {
    size_t end = list.find(',', begin);
    if (end == std::string::npos) end = list.size();
    const std::string name = list.substr(begin, end - begin);
    if (name.empty()) fail("--lora-targets ", list, ": an empty name");
    out.push_back(train::parse_lora_target(name));
    begin = end + 1;
  }
  return out;
}

int64_t positive(Args& args, const std::string& name, std::optional<int64_t> fallback = std::nullopt) {
  const std::optional<int64_t> v = args.get_int(name);
  if (!v && !fallback) fail("missing --", name);
  const int64_t value = v ? *v : *fallback;
  if (value < 1) fail("--", name, " ", value, ": must be at least 1");
  return value;
}

double number(Args& args, const std::string& name, double fallback) {
  const std::optional<double> v = args.get_double(name);
  if (v && !std::isfinite(*v)) fail("--", name, ": not a finite number");
  return v.value_or(fallback);
}

// Full fine-tuning's result: the base GGUF's metadata and tensors, the trained ones as F32.
void write_trained_gguf(const std::string& base, std::span<const train::Parameter> params, const std::string& path) {
  const std::shared_ptr<const GgufFile> file = GgufFile::open(base);
  std::map<std::string, const train::Parameter*> trained;
  for (const auto& p : params) trained[p.name] = &p;
  GgufWriter w(file->alignment());
  for (const auto& [key, value] : file->metadata())
    if (key != "general.alignment") w.set(key, value);
  size_t found = 0;
  for (const GgufTensor& t : file->tensors()) {
    auto it = trained.find(t.name);
    if (it != trained.end()) {
      if (static_cast<size_t>(t.element_count()) != it->second->value.size())
        fail(base, ": tensor ", t.name, " has ", t.element_count(), " values, the trained one ", it->second->value.size());
      ++found;
    }
    w.add_tensor(t.name, t.shape, it != trained.end() ? DType::F32 : t.type);
  }
  if (found != trained.size()) fail(base, ": ", trained.size() - found, " trained tensors are not in the base GGUF");
  w.begin(path);
  for (const GgufTensor& t : file->tensors()) {
    auto it = trained.find(t.name);
    if (it == trained.end()) w.write(t.data, t.nbytes);
    else w.write(it->second->value.data(), it->second->value.size() * sizeof(float));
  }
  w.finish();
}

}  // namespace

std::vector<train::Example> load_train_jsonl(const std::string& path, const Model& model, int64_t max_seq,
                                             bool truncate) {
  return train::load_dataset(path, data_tokenizer_of(model), {.max_seq = max_seq, .truncate = truncate});
}

// A run killed while writing its log leaves a torn last line: cut it before a resume appends, so
// that the log stays one JSON object a line (the steps after the checkpoint are logged again).
static void cut_torn_line(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty() || text.back() == '\n') return;
  std::error_code ec;
  fs::resize_file(path, text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1, ec);
  if (ec) fail(path, ": cannot cut the log's torn last line (", ec.message(), ")");
}

int run_training(Args& args, const TrainDataLoader& loader, const TrainHooks& hooks, const TrainDefaults& defaults) {
  const std::string model_path = args.require("model");
  const std::string data_path = args.require("data");
  const std::string out_dir = args.require("out");
  const std::optional<std::string> eval_path = args.get("eval");
  const std::optional<std::string> resume = args.get("resume");
  const std::string kernels = args.get_or("kernels", "fast");
  if (kernels != "fast" && kernels != "reference") fail("--kernels ", kernels, ": expected fast or reference");

  train::TrainConfig config;
  config.loss = train::parse_loss_kind(args.get_or("loss", defaults.loss));
  config.kd_alpha = number(args, "kd-alpha", defaults.kd_alpha);
  config.temperature = number(args, "kd-temperature", defaults.kd_temperature);
  config.jsd_beta = number(args, "jsd-beta", 0.5);
  config.rationale_weight = number(args, "rationale-weight", 1.0);
  config.steps = positive(args, "steps");
  config.batch_tokens = positive(args, "batch-tokens");
  config.accumulate = positive(args, "accumulate", 1);
  const std::optional<double> lr = args.get_double("lr");
  if (!lr) fail("missing --lr");
  config.lr = *lr;
  config.min_lr = number(args, "min-lr", 0.0);
  config.warmup = args.get_int("warmup").value_or(0);
  config.weight_decay = number(args, "weight-decay", 0.0);
  config.clip = number(args, "clip", 1.0);
  config.seed = static_cast<uint64_t>(args.get_int("seed").value_or(0));
  config.eval_every = args.get_int("eval-every").value_or(0);
  config.checkpoint_every = args.get_int("checkpoint-every").value_or(0);
  const int64_t stop_after = args.get_int("stop-after").value_or(0);
  const std::optional<int64_t> max_seq_arg = args.get_int("max-seq");
  const bool truncate = args.flag("truncate");
  const bool recompute = args.flag("recompute");
  const int threads = static_cast<int>(args.get_int("threads").value_or(0));
  const int64_t lora_rank = args.get_int("lora-rank").value_or(0);
  const double lora_alpha = number(args, "lora-alpha", 16.0);
  const std::string lora_targets = args.get_or("lora-targets", "q,v");
  args.finish();
  if (lora_rank < 0) fail("--lora-rank ", lora_rank, ": must be >= 0 (0: full fine-tuning)");
  if (stop_after < 0) fail("--stop-after ", stop_after, ": must be >= 0");

  // No packed copy of the weights: FastModel reads them as stored (and dequantizes per layer).
  const std::shared_ptr<const Model> model = Model::load(model_path, {.kernels = KernelChoice::reference});
  const int64_t context = model->config().context_length > 0 ? model->config().context_length : 2048;
  const int64_t max_seq = max_seq_arg.value_or(context);
  if (max_seq < 2) fail("--max-seq ", max_seq, ": must be at least 2");
  if (max_seq > context) fail("--max-seq ", max_seq, " is longer than the model's context of ", context);
  const std::vector<train::Example> data = loader(data_path, *model, max_seq, truncate);
  const std::vector<train::Example> eval =
      eval_path ? loader(*eval_path, *model, max_seq, truncate) : std::vector<train::Example>{};

  train::FastModelOptions fast_options{.kernels = kernels == "fast" ? KernelChoice::fast : KernelChoice::reference,
                                       .n_threads = threads,
                                       .recompute = recompute,
                                       .lora_rank = lora_rank,
                                       .lora_alpha = lora_alpha,
                                       .lora_targets = parse_targets(lora_targets),
                                       .seed = config.seed};
  train::FastModel fast(*model, fast_options);
  train::TrainableOf<train::FastModel> trainable(fast);
  train::Trainer trainer(trainable, config, data, eval);

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail(out_dir, ": cannot create the output folder (", ec.message(), ")");
  if (resume) trainer.restore_checkpoint((fs::path(*resume) / "checkpoint").string());
  const int64_t first_step = trainer.step();
  const int64_t last_step = stop_after > 0 ? std::min(stop_after, config.steps) : config.steps;
  if (hooks.before_run) hooks.before_run(trainer, fast, *model);
  const TrainRun run{.model = *model, .fast = fast, .trainer = trainer, .data = data, .eval = eval,
                     .last_step = last_step};
  const std::string log_path = (fs::path(out_dir) / "log.jsonl").string();
  if (resume) cut_torn_line(log_path);
  std::FILE* log = std::fopen(log_path.c_str(), resume ? "a" : "w");
  if (!log) fail(log_path, ": cannot open the log for writing");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> log_closer(log, std::fclose);

  std::fprintf(stderr, "%s: %s, %zu examples (%zu eval), %s, %zu tensors%s, %lld steps from step %lld\n",
               hooks.name.c_str(), model_path.c_str(), data.size(), eval.size(),
               lora_rank > 0 ? ("LoRA rank " + std::to_string(lora_rank)).c_str() : "full fine-tuning",
               fast.parameters().size(), recompute ? ", recompute" : "", static_cast<long long>(config.steps),
               static_cast<long long>(first_step));
  ProgressBar bar("train");
  int64_t run_tokens = 0;
  double last_loss = std::nan(""), last_eval = std::nan("");
  double train_seconds = 0;  // the steps' own time: evaluation and checkpoints are not training
  const auto started = std::chrono::steady_clock::now();
  trainer.run(
      stop_after,
      [&](const train::StepReport& r) {
        run_tokens += r.tokens;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        train_seconds += r.seconds;
        const double tps = train_seconds > 0 ? static_cast<double>(run_tokens) / train_seconds : 0;
        const double step_tps = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0;
        nlohmann::ordered_json line = {{"step", r.step}, {"loss", r.skipped ? json(nullptr) : json(r.loss)}, {"lr", r.lr},
                     {"grad_norm", r.grad_norm}, {"tokens", r.tokens}, {"tokens_per_s", step_tps}};
        if (r.evaluated) line["eval_loss"] = std::isfinite(r.eval_loss) ? json(r.eval_loss) : json(nullptr);
        if (r.skipped) {
          line["skipped"] = true;
          line["reason"] = r.skip_reason;
          std::fprintf(stderr, "%s%s: step %lld skipped: %s\n", ::isatty(2) ? "\n" : "", hooks.name.c_str(),
                       static_cast<long long>(r.step), r.skip_reason.c_str());
        } else {
          last_loss = r.loss;
        }
        if (r.evaluated) last_eval = r.eval_loss;
        if (hooks.after_step) hooks.after_step(run, r, line);
        const std::string text = line.dump() + "\n";
        std::fwrite(text.data(), 1, text.size(), log);
        std::fflush(log);
        const int64_t done = r.step - first_step, left = config.steps - r.step;
        char detail[160];
        std::snprintf(detail, sizeof detail, "step %lld/%lld loss %.4f %.0f tok/s ETA %s", static_cast<long long>(r.step),
                      static_cast<long long>(config.steps), r.loss, tps,
                      eta_text(done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(left) : NAN).c_str());
        bar.update(static_cast<double>(r.step) / static_cast<double>(config.steps), detail);
      },
      (fs::path(out_dir) / "checkpoint").string());
  bar.done();

  if (fast.is_lora()) {
    const train::Lora lora = fast.lora();
    train::save_peft_adapter(lora, model->config(), out_dir, model_path);
    train::save_gguf_adapter(lora, model->config(), (fs::path(out_dir) / "adapter.gguf").string());
  } else {
    if (model->config().source_format != "gguf")
      fail(model_path, ": full fine-tuning writes model.gguf from a GGUF base (this base is ", model->config().source_format,
           "); the checkpoint in ", out_dir, "/checkpoint holds the trained tensors");
    write_trained_gguf(model_path, fast.parameters(), (fs::path(out_dir) / "model.gguf").string());
  }
  const auto show = [](double v) { return std::isfinite(v) ? str_cat(v) : std::string("n/a"); };
  std::printf("trained: %lld steps, %lld tokens, %.0f tokens/s, final loss %s, eval loss %s\n",
              static_cast<long long>(trainer.step() - first_step), static_cast<long long>(run_tokens),
              train_seconds > 0 ? static_cast<double>(run_tokens) / train_seconds : 0.0, show(last_loss).c_str(), show(last_eval).c_str());
  if (trainer.skipped_steps() > 0)
    std::fprintf(stderr, "%s: %lld steps were skipped (log.jsonl has them)\n", hooks.name.c_str(),
                 static_cast<long long>(trainer.skipped_steps()));
  // Where the memory goes (the peak RSS is about their sum plus the process's own): the mapped
  // file, the trainable tensors with their gradients, AdamW's two moments, one batch's activations.
  constexpr double kMiB = 1 << 20;
  std::error_code size_error;
  const uint64_t file_bytes = fs::file_size(model_path, size_error);
  std::fprintf(stderr,
               "memory: model file %.0f MiB (mapped), parameters and gradients %.1f MiB, AdamW moments %.1f MiB, "
               "activations at most %.0f MiB (of which logits and their gradient %.0f MiB)\n",
               size_error ? 0.0 : static_cast<double>(file_bytes) / kMiB, static_cast<double>(fast.parameter_bytes()) / kMiB,
               static_cast<double>(fast.parameter_bytes()) / kMiB, static_cast<double>(fast.peak_activation_bytes()) / kMiB,
               static_cast<double>(fast.peak_logit_bytes()) / kMiB);
  return 0;
}

namespace {

int train_run(Args& args) { return run_training(args, load_train_jsonl, {}); }

// ---------------------------------------------------------------------------------------------
// orchard train init: a llama of a chosen shape with random weights and another model's tokenizer.

int train_init(Args& args) {
  const std::string like_path = args.require("like");
  const std::string out_path = args.require("out");
  const std::shared_ptr<const GgufFile> like = GgufFile::open(like_path);
  const std::string arch = like->get_string("general.architecture").value_or("");
  const auto like_int = [&](const std::string& key, int64_t fallback) {
    return arch.empty() ? fallback : like->get_int(arch + "." + key).value_or(fallback);
  };
  const GgufTensor* embd = like->find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) fail(like_path, ": no token_embd.weight to take the vocabulary size from");
  const int64_t V = embd->shape[1];
  const int64_t layers = positive(args, "layers", like_int("block_count", 0));
  const int64_t D = positive(args, "dim", like_int("embedding_length", 0));
  const int64_t H = positive(args, "heads", like_int("attention.head_count", 0));
  const int64_t K = positive(args, "kv-heads", args.get_int("heads") ? H : like_int("attention.head_count_kv", H));
  const int64_t F = positive(args, "ffn", like_int("feed_forward_length", 0));
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed").value_or(0));
  args.finish();
  if (D % H != 0 || (D / H) % 2 != 0) fail("--dim ", D, " --heads ", H, ": the head size must be a whole, even number");
  if (H % K != 0) fail("--heads ", H, " is not a multiple of --kv-heads ", K);
  const int64_t hd = D / H;
  const double eps = arch.empty() ? 1e-5 : like->get_float(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
  const double theta = arch.empty() ? 10000.0 : like->get_float(arch + ".rope.freq_base").value_or(10000.0);
  const int64_t ctx = like_int("context_length", 2048);

  GgufWriter w;
  for (const auto& [key, value] : like->metadata())
    if (key.starts_with("tokenizer.")) w.set(key, value);
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "orchard-train-init");
  w.set_u32("general.file_type", 0);  // all F32
  w.set_u32("llama.context_length", static_cast<uint32_t>(ctx));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(D));
  w.set_u32("llama.block_count", static_cast<uint32_t>(layers));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(F));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(H));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(K));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(hd));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(eps));
  w.set_f32("llama.rope.freq_base", static_cast<float>(theta));
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(V));
  // ne order: the contiguous (input) dimension first. Norms are ones, everything else normal(0, 0.02).
  struct Spec {
    std::string name;
    std::vector<int64_t> ne;
    bool norm;
  };
  std::vector<Spec> specs = {{"token_embd.weight", {D, V}, false}};
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    specs.push_back({p + "attn_norm.weight", {D}, true});
    specs.push_back({p + "attn_q.weight", {D, H * hd}, false});
    specs.push_back({p + "attn_k.weight", {D, K * hd}, false});
    specs.push_back({p + "attn_v.weight", {D, K * hd}, false});
    specs.push_back({p + "attn_output.weight", {H * hd, D}, false});
    specs.push_back({p + "ffn_norm.weight", {D}, true});
    specs.push_back({p + "ffn_gate.weight", {D, F}, false});
    specs.push_back({p + "ffn_up.weight", {D, F}, false});
    specs.push_back({p + "ffn_down.weight", {F, D}, false});
  }
  specs.push_back({"output_norm.weight", {D}, true});
  if (like->find_tensor("output.weight")) specs.push_back({"output.weight", {D, V}, false});
  for (const Spec& s : specs) w.add_tensor(s.name, s.ne, DType::F32);
  w.begin(out_path);
  // Box-Muller on a 64-bit Mersenne twister: the same file from the same seed on every platform.
  std::mt19937_64 rng(seed);
  const auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53; };
  int64_t count = 0;
  for (const Spec& s : specs) {
    const int64_t rows = s.ne.size() == 2 ? s.ne[1] : 1, cols = s.ne[0];
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; c += 2) {
        if (s.norm) {
          row[c] = 1.0f;
          if (c + 1 < cols) row[c + 1] = 1.0f;
          continue;
        }
        const double radius = std::sqrt(-2.0 * std::log(uniform())), angle = 2.0 * M_PI * uniform();
        row[c] = static_cast<float>(0.02 * radius * std::cos(angle));
        if (c + 1 < cols) row[c + 1] = static_cast<float>(0.02 * radius * std::sin(angle));
      }
      w.write(row.data(), row.size() * sizeof(float));
    }
    count += rows * cols;
  }
  w.finish();
  std::printf("wrote %s: llama, %lld layers, dim %lld, %lld heads (%lld KV), ffn %lld, vocab %lld, %lld parameters\n",
              out_path.c_str(), static_cast<long long>(layers), static_cast<long long>(D), static_cast<long long>(H),
              static_cast<long long>(K), static_cast<long long>(F), static_cast<long long>(V), static_cast<long long>(count));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// orchard train merge: a PEFT adapter merged into a copy of its base GGUF.

int train_merge(Args& args) {
  const std::string base = args.require("model");
  const std::string adapter = args.require("adapter");
  const std::string out_path = args.require("out");
  args.finish();
  const std::shared_ptr<const Model> model = Model::load(base, {.kernels = KernelChoice::reference});
  if (model->config().source_format != "gguf") fail(base, ": merging writes a GGUF, so the base must be a GGUF file");
  const train::Lora lora = train::load_peft_adapter(adapter, model->config());
  train::merge_adapter_into_gguf(base, lora, out_path);
  std::printf("merged %zu adapters (rank %lld, alpha %g) into %s\n", lora.adapters.size(),
              static_cast<long long>(lora.config.rank), lora.config.alpha, out_path.c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// orchard train eval: the cross-entropy of a JSONL file under a model (and a PEFT adapter).

int train_eval(Args& args) {
  const std::string model_path = args.require("model");
  const std::string data_path = args.require("data");
  const std::optional<std::string> adapter = args.get("adapter");
  const std::string kernels = args.get_or("kernels", "fast");
  const int64_t batch_tokens = positive(args, "batch-tokens", 4096);
  const int threads = static_cast<int>(args.get_int("threads").value_or(0));
  const std::optional<int64_t> max_seq_arg = args.get_int("max-seq");
  const bool truncate = args.flag("truncate");
  args.finish();
  if (kernels != "fast" && kernels != "reference") fail("--kernels ", kernels, ": expected fast or reference");
  const std::shared_ptr<const Model> model = Model::load(model_path, {.kernels = KernelChoice::reference});
  const int64_t context = model->config().context_length > 0 ? model->config().context_length : 2048;
  const int64_t max_seq = max_seq_arg.value_or(context);
  if (max_seq < 2 || max_seq > context) fail("--max-seq ", max_seq, ": must be in [2, ", context, "] (the model's context)");
  const std::vector<train::Example> data = train::load_dataset(
      data_path, data_tokenizer_of(*model), {.max_seq = max_seq, .truncate = truncate});
  // A frozen base: LoRA mode (with the adapter, or a rank-1 adapter whose B is zero) trains nothing
  // and copies no weights.
  train::FastModelOptions options{.kernels = kernels == "fast" ? KernelChoice::fast : KernelChoice::reference,
                                  .n_threads = threads, .lora_rank = 1, .lora_alpha = 1};
  train::Lora lora;
  if (adapter) {
    lora = train::load_peft_adapter(*adapter, model->config());
    options.lora_rank = lora.config.rank;
    options.lora_alpha = lora.config.alpha;
    options.lora_targets = lora.config.targets;
  }
  train::FastModel fast(*model, options);
  if (adapter) fast.set_lora(lora);
  // Per example: its mean CE over its trained rows and how many rows that is.
  std::vector<double> ce(data.size());
  std::vector<int64_t> rows(data.size());
  size_t begin = 0;
  while (begin < data.size()) {
    size_t end = begin;
    int64_t tokens = 0;
    std::vector<std::vector<int32_t>> seqs;
    while (end < data.size() && (end == begin || tokens + data[end].size() <= batch_tokens)) {
      tokens += data[end].size();
      seqs.push_back(data[end++].tokens);
    }
    fast.loss_only(seqs, [&](size_t i, std::span<const float> logits, std::span<float>) {
      const train::Example& e = data[begin + i];
      const int64_t T = e.size(), V = static_cast<int64_t>(logits.size()) / T;
      ce[begin + i] = train::cross_entropy(logits, T, V, e.targets, e.ce_mask, {});
      for (uint8_t m : e.ce_mask) rows[begin + i] += m;
      return ce[begin + i];
    });
    begin = end;
  }
  double weighted = 0, weight = 0, token_sum = 0;
  int64_t token_count = 0;
  std::map<int32_t, int64_t> counts;
  for (size_t e = 0; e < data.size(); ++e) {
    weighted += data[e].weight * ce[e], weight += data[e].weight;
    token_sum += ce[e] * static_cast<double>(rows[e]), token_count += rows[e];
    for (int64_t i = 0; i < data[e].size(); ++i)
      if (data[e].ce_mask[i]) ++counts[data[e].targets[i]];
  }
  double entropy = 0;
  for (const auto& [id, n] : counts) {
    const double p = static_cast<double>(n) / static_cast<double>(token_count);
    entropy -= p * std::log(p);
  }
  nlohmann::ordered_json out = {{"loss", weighted / weight},
                                {"token_loss", token_sum / static_cast<double>(token_count)},
                                {"unigram_entropy", entropy},
                                {"examples", data.size()},
                                {"tokens", token_count}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

const RegisterCommand kTrain("train", "train a model or LoRA adapters on a JSONL file (docs/training.md)", train_run,
                             {"recompute", "truncate"});
const RegisterCommand kInit("train init", "write a llama GGUF of a chosen shape with random weights and another's tokenizer",
                            train_init);
const RegisterCommand kEval("train eval",
                            "the cross-entropy of a JSONL file under a model (and a PEFT adapter), as one JSON line",
                            train_eval, {"truncate"});
const RegisterCommand kMerge("train merge", "merge a PEFT LoRA adapter into a copy of its base GGUF", train_merge);

}  // namespace
}  // namespace orchard::cli
