// orchard train check --manifest FILE --case NAME --out GRADS.f32 [--kernels reference|fast]
//
// Runs one case of a gradient manifest laid out like shared/train/manifest.json (issue 17) on the
// trainer's reference path and writes the result in the manifest's own file layout (the case's
// tensors at their offsets, float32 little-endian), so that the file can be diffed against the
// oracle or against any other framework. Kinds: sft and kd (every tensor of the model; tensors
// with no gradient, such as the constant rope_freqs, are written as zeros), lora (the adapter
// gradients at the stored init adapters) and adamw (one step from the stored sft gradient:
// .updated, .exp_avg, .exp_avg_sq). Model paths in the manifest are relative to the folder that
// holds the manifest's folder; data files (init adapters, gradients) to the manifest's folder.
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "command.h"
#include "train/lora.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/reference_model.h"

namespace orchard::cli {
namespace {

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

int train_check(Args& args) {
  const std::string manifest_path = args.require("manifest");
  const std::string case_name = args.require("case");
  const std::string out_path = args.require("out");
  const std::string kernels = args.get_or("kernels", "reference");
  args.finish();
  if (kernels == "fast") fail("--kernels fast: the fast training path is not built yet (use --kernels reference)");
  if (kernels != "reference") fail("--kernels ", kernels, ": expected reference or fast");

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

  const train::ReferenceModel model = train::load_reference_model((root / c.at("model").get<std::string>()).string());

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
  if (kind == "sft" || kind == "kd") {
    train::ReferenceParams grads = train::zeros_like(model.params);
    if (kind == "sft") {
      loss = train::reference_loss_gradients(model, tokens, ce, grads);
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
      loss = train::reference_loss_gradients(
          model, tokens,
          [&](std::span<const float> logits, std::span<float> dlogits) {
            return train::distill_loss(logits, n, V, teacher,
                                       {.divergence = train::Divergence::forward_kl, .temperature = T}, {}, dlogits);
          },
          grads);
    }
    missing = put_named(out, layout, train::named_tensors(grads, model.config));
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
    train::Lora grads;
    loss = train::lora_loss_gradients(model, lora, tokens, ce, grads);
    missing = put_named(out, layout, train::lora_tensors(grads));
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

const RegisterCommand kCheck("train check", "run a gradient-manifest case on the reference trainer; write its result file",
                             train_check);

}  // namespace
}  // namespace orchard::cli
