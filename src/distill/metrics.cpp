#include "distill/metrics.h"

#include <cmath>
#include <limits>

#include "base/error.h"

namespace orchard::distill {
namespace {

struct ExampleSums {
  double kl = 0, ce = 0;
  int64_t kd_rows = 0, ce_rows = 0, agree = 0;
};

// One example's sums over its rows; logits [T, V].
ExampleSums score_one(const train::Example& e, std::span<const float> logits) {
  const int64_t T = e.size(), V = static_cast<int64_t>(logits.size()) / T;
  ExampleSums s;
  for (int64_t i = 0; i < T; ++i) {
    const bool kd = e.has_teacher() && !e.kd_mask.empty() && e.kd_mask[i];
    const bool ce = !e.rationale && !e.ce_mask.empty() && e.ce_mask[i];
    if (!kd && !ce) continue;
    const float* z = logits.data() + i * V;
    int64_t best = 0;
    double top = z[0];
    for (int64_t c = 1; c < V; ++c)
      if (z[c] > top) top = z[c], best = c;
    double sum = 0;
    for (int64_t c = 0; c < V; ++c) sum += std::exp(static_cast<double>(z[c]) - top);
    const double lse = top + std::log(sum);  // log q_c = z_c - lse
    if (kd) {
      const int32_t* ids = e.teacher_ids.data() + i * e.teacher_k;
      const float* probs = e.teacher_probs.data() + i * e.teacher_k;
      int64_t likeliest = 0;
      double kl = 0;
      for (int64_t j = 0; j < e.teacher_k; ++j) {
        if (ids[j] < 0 || ids[j] >= V)
          fail("the example of line ", e.line, ": teacher id ", ids[j], " is outside the student's vocabulary of ", V);
        if (probs[j] > probs[likeliest]) likeliest = j;
        const double p = probs[j];
        if (p > 0) kl += p * (std::log(p) - (static_cast<double>(z[ids[j]]) - lse));
      }
      s.kl += kl;
      s.agree += ids[likeliest] == best;
      ++s.kd_rows;
    }
    if (ce) {
      const int32_t t = e.targets[i];
      if (t < 0 || t >= V)
        fail("the example of line ", e.line, ": target ", t, " is outside the student's vocabulary of ", V);
      s.ce += lse - static_cast<double>(z[t]);
      ++s.ce_rows;
    }
  }
  return s;
}

}  // namespace

TeacherMetrics score_examples(train::FastModel& student, std::span<const train::Example> examples,
                              int64_t batch_tokens) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  std::vector<ExampleSums> sums(examples.size());
  size_t begin = 0;
  while (begin < examples.size()) {
    size_t end = begin;
    int64_t tokens = 0;
    std::vector<std::vector<int32_t>> seqs;
    while (end < examples.size() && (end == begin || tokens + examples[end].size() <= batch_tokens)) {
      tokens += examples[end].size();
      seqs.push_back(examples[end++].tokens);
    }
    student.loss_only(seqs, [&](size_t i, std::span<const float> logits, std::span<float>) {
      sums[begin + i] = score_one(examples[begin + i], logits);
      return 0.0;
    });
    begin = end;
  }
  TeacherMetrics m;
  m.examples = static_cast<int64_t>(examples.size());
  double kl = 0, ce = 0;
  int64_t agree = 0;
  for (const ExampleSums& s : sums) {
    m.rows += s.kd_rows, m.ce_rows += s.ce_rows, agree += s.agree, kl += s.kl, ce += s.ce;
    m.per_example_kl.push_back(s.kd_rows > 0 ? s.kl / static_cast<double>(s.kd_rows) : kNaN);
    m.per_example_ce.push_back(s.ce_rows > 0 ? s.ce / static_cast<double>(s.ce_rows) : kNaN);
  }
  m.agreement = m.rows > 0 ? static_cast<double>(agree) / static_cast<double>(m.rows) : kNaN;
  m.kl = m.rows > 0 ? kl / static_cast<double>(m.rows) : kNaN;
  m.ce = m.ce_rows > 0 ? ce / static_cast<double>(m.ce_rows) : kNaN;
  return m;
}

}  // namespace orchard::distill
