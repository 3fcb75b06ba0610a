#include "model/activation_levels.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <unordered_map>

#include "kernels/kernels.h"
#include "model/transformer.h"

namespace orchard {
namespace {

// Runs each product again with one level on the same input and sums both outputs' squares.
class LevelProbe : public MatmulProbe {
 public:
  LevelProbe(const Kernels& kernels, ThreadPool& pool) : kernels_(kernels), pool_(pool) {}

  void on_matmul(const MatmulWeight& w, const float* x, int64_t n, const float* y) override {
    if (!w.packed) return;
    PackedMatrix one = *w.packed;  // shares the tiles; only the flag differs
    one.single_level = true;
    const size_t size = static_cast<size_t>(n * w.packed->out);
    single_.resize(size);
    kernels_.matmul(MatmulWeight{w.ref, &one}, x, n, single_.data(), pool_);
    Sums& s = sums_[w.packed];
    for (size_t i = 0; i < size; ++i) {
      const double d = static_cast<double>(single_[i]) - y[i];
      s.error += d * d;
      s.output += static_cast<double>(y[i]) * y[i];
    }
  }

  double relative_error(const PackedMatrix* p) const {
    auto it = sums_.find(p);
    if (it == sums_.end() || it->second.output <= 0) return 0;
    return it->second.error / it->second.output;
  }

 private:
  struct Sums {
    double error = 0, output = 0;
  };
  const Kernels& kernels_;
  ThreadPool& pool_;
  std::vector<float> single_;
  std::unordered_map<const PackedMatrix*, Sums> sums_;
};

// Mean over rows of KL(softmax(p) || softmax(q)): the probabilities from the kernels' vectorized
// exp, the sum in double.
double mean_kl(const Kernels& kernels, const std::vector<float>& p, const std::vector<float>& q, int64_t rows,
               int64_t vocab) {
  std::vector<float> weight(static_cast<size_t>(vocab));
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = &p[static_cast<size_t>(r * vocab)];
    const float* b = &q[static_cast<size_t>(r * vocab)];
    const float ma = *std::max_element(a, a + vocab), mb = *std::max_element(b, b + vocab);
    const double zb = kernels.exp_weights(b, vocab, mb, 1.0f, weight.data());
    const double za = kernels.exp_weights(a, vocab, ma, 1.0f, weight.data());
    // KL = sum p (log p - log q), log p = a - ma - log za, log q = b - mb - log zb.
    const double shift = (static_cast<double>(mb) - ma) + std::log(zb) - std::log(za);
    double kl = 0;
    for (int64_t i = 0; i < vocab; ++i) kl += static_cast<double>(weight[static_cast<size_t>(i)]) * (a[i] - b[i]);
    total += std::max(0.0, kl / za + shift);
  }
  return total / static_cast<double>(rows);
}

}  // namespace

std::vector<MatrixLevel> choose_activation_levels(Model::Impl& impl, double kl_budget) {
  // The matrices by role: one pass per role measures what single-level activations in all of
  // that role's matrices do to the logits.
  const ModelWeights& mw = impl.weights;
  std::vector<std::vector<const TensorRef*>> roles(8);
  for (const LayerWeights& l : mw.layers) {
    const TensorRef* in_layer[] = {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down};
    for (int r = 0; r < 7; ++r) roles[static_cast<size_t>(r)].push_back(in_layer[r]);
  }
  roles[7].push_back(&mw.output);
  bool any_packed = false;
  for (auto& role : roles) {
    std::erase_if(role, [&](const TensorRef* t) { return impl.packed.find(*t) == nullptr; });
    for (const TensorRef* t : role) impl.packed.find(*t)->single_level = false;
    any_packed = any_packed || !role.empty();
  }
  if (!any_packed) return {};
  const Kernels& kernels = select_kernels(KernelChoice::fast);
  if (&kernels == &reference_kernels()) return {};  // ORCHARD_ISA=reference: no packed product runs

  // A fixed pseudo-random sequence of tokens: the same choice on every load of the same file.
  const int64_t trained = impl.config.context_length;
  const int64_t n = trained > 0 ? std::min(kCalibrationTokens, trained) : kCalibrationTokens;
  const int64_t vocab = impl.config.n_vocab;
  std::mt19937 rng(20261206);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t& t : tokens) t = token(rng);

  Transformer transformer(impl, kernels, n);
  LevelProbe probe(kernels, transformer.pool());
  // The KL is taken at the last rows only: they see every earlier position's perturbation too.
  const int64_t rows = std::min(kKlRows, n);
  const SequenceTokens pass{.sequence = 0, .start = 0, .tokens = tokens, .logit_rows = rows};
  std::vector<float> base(static_cast<size_t>(rows * vocab)), trial(base.size());
  transformer.set_probe(&probe);
  transformer.forward(std::span<const SequenceTokens>(&pass, 1), base.data());
  transformer.set_probe(nullptr);

  // One level everywhere first: when that is within the budget (a model whose logits hardly
  // move), nothing needs to stay on two levels and the role passes are skipped.
  auto kl_with_single_level = [&](const std::vector<const TensorRef*>& matrices) {
    for (const TensorRef* t : matrices) impl.packed.find(*t)->single_level = true;
    transformer.forward(std::span<const SequenceTokens>(&pass, 1), trial.data());
    for (const TensorRef* t : matrices) impl.packed.find(*t)->single_level = false;
    return mean_kl(kernels, base, trial, rows, vocab);
  };
  std::vector<const TensorRef*> all;
  for (const auto& role : roles) all.insert(all.end(), role.begin(), role.end());
  const double all_kl = kl_with_single_level(all);
  std::vector<MatrixLevel> levels;
  if (all_kl <= kl_budget) {
    double total_error = 0;
    for (const TensorRef* t : all) total_error += probe.relative_error(impl.packed.find(*t));
    for (const TensorRef* t : all) {
      const double e = probe.relative_error(impl.packed.find(*t));
      levels.push_back({t, e, total_error > 0 ? all_kl * e / total_error : 0.0, true});
      impl.packed.find(*t)->single_level = true;
    }
    return levels;
  }
  // Each matrix's share of its role's KL, in proportion to the error it measured.
  for (const auto& role : roles) {
    if (role.empty()) continue;
    const double role_kl = kl_with_single_level(role);
    double role_error = 0;
    for (const TensorRef* t : role) role_error += probe.relative_error(impl.packed.find(*t));
    for (const TensorRef* t : role) {
      const double e = probe.relative_error(impl.packed.find(*t));
      levels.push_back({t, e, role_error > 0 ? role_kl * e / role_error : role_kl / static_cast<double>(role.size()),
                        false});
    }
  }
  // Cheapest KL per multiply-add saved first, while the sum stays within the budget.
  std::vector<size_t> order(levels.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto macs = [&](size_t i) { return static_cast<double>(levels[i].matrix->element_count()); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return levels[a].kl / macs(a) < levels[b].kl / macs(b); });
  double spent = 0;
  for (size_t i : order) {
    if (spent + levels[i].kl > kl_budget) continue;
    spent += levels[i].kl;
    levels[i].single_level = true;
  }
  for (const MatrixLevel& l : levels) impl.packed.find(*l.matrix)->single_level = l.single_level;
  return levels;
}

}  // namespace orchard
