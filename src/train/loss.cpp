#include "train/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "base/error.h"

namespace orchard::train {
namespace {

void check_logits(std::span<const float> logits, int64_t n, int64_t V) {
  if (n < 1 || V < 1) fail("loss: need at least one position and one vocabulary entry, got n = ", n, ", V = ", V);
  if (static_cast<int64_t>(logits.size()) / V != n || static_cast<int64_t>(logits.size()) != n * V)
    fail("loss: logits hold ", logits.size(), " values, not n * V = ", n, " * ", V);
}

void check_grad(std::span<float> grad, int64_t n, int64_t V) {
  if (!grad.empty() && static_cast<int64_t>(grad.size()) != n * V)
    fail("loss: the gradient holds ", grad.size(), " values, not n * V = ", n * V);
}

// The number of positions that count; throws for a mask of the wrong size or with none.
int64_t count_mask(std::span<const uint8_t> mask, int64_t n, const char* what) {
  if (mask.empty()) return n;
  if (static_cast<int64_t>(mask.size()) != n) fail(what, " mask has ", mask.size(), " entries for ", n, " positions");
  int64_t count = 0;
  for (uint8_t m : mask) count += m != 0;
  if (count == 0) fail(what, " mask counts no position: the mean is undefined");
  return count;
}

bool counts(std::span<const uint8_t> mask, int64_t i) { return mask.empty() || mask[i] != 0; }

// The row's largest logit, refusing NaN and infinities.
double row_max(const float* z, int64_t V, int64_t i) {
  double best = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < V; ++j) {
    if (!std::isfinite(z[j])) fail("loss: logit at row ", i, ", column ", j, " is ", std::isnan(z[j]) ? "NaN" : "infinite");
    best = std::max(best, static_cast<double>(z[j]));
  }
  return best;
}

// -log_softmax(z)[target]; g = softmax(z) - onehot(target).
double ce_row(const float* z, int64_t V, int64_t i, int32_t target, double* g) {
  if (target < 0 || target >= V) fail("cross-entropy: target ", target, " at row ", i, " is outside the vocabulary [0, ", V, ")");
  const double max = row_max(z, V, i);
  double sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(z[j]) - max);
  const double lse = max + std::log(sum);
  for (int64_t j = 0; j < V; ++j) g[j] = std::exp(static_cast<double>(z[j]) - lse);
  g[target] -= 1;
  return lse - static_cast<double>(z[target]);
}

void check_teacher(const TeacherTopK& t, int64_t n, int64_t V) {
  if (t.k < 1 || t.k > V) fail("distillation: teacher k = ", t.k, " is not in [1, V = ", V, "]");
  if (static_cast<int64_t>(t.ids.size()) != n * t.k) fail("distillation: teacher ids hold ", t.ids.size(), " values, not n * k = ", n * t.k);
  if (static_cast<int64_t>(t.probs.size()) != n * t.k)
    fail("distillation: teacher probabilities hold ", t.probs.size(), " values, not n * k = ", n * t.k);
}

// Row i of the teacher, checked: ids in [0, V) and distinct, probabilities in [0, 1] summing to 1.
void check_teacher_row(const TeacherTopK& t, int64_t V, int64_t i, bool need_positive) {
  const int32_t* ids = t.ids.data() + i * t.k;
  const float* p = t.probs.data() + i * t.k;
  double sum = 0;
  for (int64_t c = 0; c < t.k; ++c) {
    if (ids[c] < 0 || ids[c] >= V)
      fail("distillation: teacher id ", ids[c], " at position ", i, " is outside the vocabulary [0, ", V, ")");
    for (int64_t d = 0; d < c; ++d)
      if (ids[d] == ids[c]) fail("distillation: teacher id ", ids[c], " repeats at position ", i);
    if (!(p[c] >= 0 && p[c] <= 1)) fail("distillation: teacher probability ", p[c], " at position ", i, " is not in [0, 1]");
    if (need_positive && p[c] == 0)
      fail("distillation: teacher probability 0 at position ", i, " (id ", ids[c], "): reverse KL is infinite");
    sum += p[c];
  }
  if (std::fabs(sum - 1) > 1e-3) fail("distillation: teacher probabilities at position ", i, " sum to ", sum, ", not 1");
}

// Row i's divergence without the T^2 factor, and g = d(divergence)/dz (the 1/T included).
double kd_row(const float* z, int64_t V, int64_t i, const TeacherTopK& t, const KdOptions& o, double* g) {
  const double T = o.temperature;
  const int32_t* ids = t.ids.data() + i * t.k;
  const float* pf = t.probs.data() + i * t.k;
  const double max = row_max(z, V, i);
  std::fill(g, g + V, 0.0);
  if (o.divergence == Divergence::forward_kl) {
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp((z[j] - max) / T);
    const double lse = max / T + std::log(sum);  // log sum exp(z / T)
    double loss = 0, P = 0;
    for (int64_t c = 0; c < t.k; ++c) {
      const double p = pf[c];
      P += p;
      if (p > 0) loss += p * (std::log(p) - (z[ids[c]] / T - lse));
    }
    for (int64_t j = 0; j < V; ++j) g[j] = P * std::exp(z[j] / T - lse) / T;
    for (int64_t c = 0; c < t.k; ++c) g[ids[c]] -= pf[c] / T;
    return loss;
  }
  // The student restricted to K_i and renormalized: r.
  std::vector<double> r(t.k), f(t.k);
  double kmax = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < t.k; ++c) kmax = std::max(kmax, static_cast<double>(z[ids[c]]));
  double sum = 0;
  for (int64_t c = 0; c < t.k; ++c) sum += r[c] = std::exp((z[ids[c]] - kmax) / T);
  const double log_sum = std::log(sum);
  double loss = 0;
  for (int64_t c = 0; c < t.k; ++c) {
    const double log_r = (z[ids[c]] - kmax) / T - log_sum;
    r[c] /= sum;
    const double p = pf[c];
    if (o.divergence == Divergence::reverse_kl) {
      const double d = log_r - std::log(p);
      if (r[c] > 0) loss += r[c] * d;
      f[c] = d + 1;
    } else {
      const double beta = o.beta;
      const double m = beta * p + (1 - beta) * r[c];
      if (p > 0 && beta > 0) loss += beta * p * (std::log(p) - std::log(m));
      if (r[c] > 0 && beta < 1) loss += (1 - beta) * r[c] * (log_r - std::log(m));
      f[c] = r[c] > 0 ? (1 - beta) * (log_r - std::log(m)) : 0;
    }
  }
  double mean_f = 0;
  for (int64_t c = 0; c < t.k; ++c) mean_f += r[c] * f[c];
  for (int64_t c = 0; c < t.k; ++c) g[ids[c]] = r[c] * (f[c] - mean_f) / T;
  return loss;
}

void check_kd_options(const KdOptions& o) {
  if (!(o.temperature > 0) || !std::isfinite(o.temperature)) fail("distillation: temperature ", o.temperature, " is not > 0");
  if (o.divergence == Divergence::jsd && !(o.beta >= 0 && o.beta <= 1)) fail("distillation: JSD beta ", o.beta, " is not in [0, 1]");
}

}  // namespace

double cross_entropy(std::span<const float> logits, int64_t n, int64_t V, std::span<const int32_t> targets,
                     std::span<const uint8_t> mask, std::span<float> grad) {
  return distill_mix(logits, n, V, 0.0, {}, {}, {}, targets, mask, grad);
}

double distill_loss(std::span<const float> logits, int64_t n, int64_t V, const TeacherTopK& teacher,
                    const KdOptions& options, std::span<const uint8_t> mask, std::span<float> grad) {
  return distill_mix(logits, n, V, 1.0, teacher, options, mask, {}, {}, grad);
}

double distill_mix(std::span<const float> logits, int64_t n, int64_t V, double alpha, const TeacherTopK& teacher,
                   const KdOptions& options, std::span<const uint8_t> kd_mask, std::span<const int32_t> targets,
                   std::span<const uint8_t> ce_mask, std::span<float> grad) {
  check_logits(logits, n, V);
  check_grad(grad, n, V);
  if (!(alpha >= 0 && alpha <= 1)) fail("loss mix: alpha ", alpha, " is not in [0, 1]");
  const bool use_kd = alpha > 0, use_ce = alpha < 1;
  int64_t kd_count = 0, ce_count = 0;
  if (use_kd) {
    check_kd_options(options);
    check_teacher(teacher, n, V);
    kd_count = count_mask(kd_mask, n, "distillation:");
  }
  if (use_ce) {
    if (static_cast<int64_t>(targets.size()) != n) fail("cross-entropy: ", targets.size(), " targets for ", n, " positions");
    ce_count = count_mask(ce_mask, n, "cross-entropy:");
  }
  const double T = options.temperature;
  const double kd_scale = use_kd ? alpha * T * T / static_cast<double>(kd_count) : 0;
  const double ce_scale = use_ce ? (1 - alpha) / static_cast<double>(ce_count) : 0;
  std::vector<double> g_kd(use_kd ? V : 0), g_ce(use_ce ? V : 0);
  double kd_sum = 0, ce_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* z = logits.data() + i * V;
    const bool kd_here = use_kd && counts(kd_mask, i), ce_here = use_ce && counts(ce_mask, i);
    if (!kd_here && !ce_here) row_max(z, V, i);  // refuses NaN even where nothing counts
    if (kd_here) {
      check_teacher_row(teacher, V, i, options.divergence == Divergence::reverse_kl);
      kd_sum += kd_row(z, V, i, teacher, options, g_kd.data());
    }
    if (ce_here) ce_sum += ce_row(z, V, i, targets[i], g_ce.data());
    if (grad.empty()) continue;
    float* out = grad.data() + i * V;
    for (int64_t j = 0; j < V; ++j) {
      double v = 0;
      if (kd_here) v += kd_scale * g_kd[j];
      if (ce_here) v += ce_scale * g_ce[j];
      out[j] = static_cast<float>(v);
    }
  }
  double loss = 0;
  if (use_kd) loss += alpha * T * T * kd_sum / static_cast<double>(kd_count);
  if (use_ce) loss += (1 - alpha) * ce_sum / static_cast<double>(ce_count);
  return loss;
}

}  // namespace orchard::train
