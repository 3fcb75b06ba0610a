// How close a student is to its teacher on held-out collected data (issue 18): the numbers that
// `orchard distill train` logs at each evaluation and `orchard distill eval` reports.
//
// Over the KD rows of the examples (rows with the teacher's top k, teacher_data.h), with p the
// teacher's stored probabilities (its top k renormalized) and q the student's softmax over the FULL
// vocabulary at temperature 1:
//   agreement = the share of rows where the student's argmax is the teacher's likeliest id (top-1);
//   kl        = the mean over rows of sum_c p_c (log p_c - log q_c), c over the teacher's k (terms
//               with p_c = 0 are 0). Not 0 when the student equals the teacher: a student whose q is
//               the teacher's full distribution scores -log(its mass on the top k), the stored k's
//               missing mass; it is the same forward KL the trainer's kd loss minimizes at T = 1.
// Over the CE rows of the answer examples (not the rationale sequences):
//   ce        = the mean of -log q[target] (the answer's next-token cross-entropy).
// Means are over rows (not examples); NaN when there are no such rows.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "train/dataset.h"
#include "train/fast_model.h"

namespace orchard::distill {

struct TeacherMetrics {
  int64_t examples = 0;
  int64_t rows = 0;      // KD rows (agreement and kl are over these)
  int64_t ce_rows = 0;   // CE rows of the answer examples (ce is over these)
  double agreement = 0;  // top-1, in [0, 1]
  double kl = 0;
  double ce = 0;
  // Per example, in order: its mean over its own KD rows / CE rows (NaN where it has none; ce NaN
  // for a rationale sequence).
  std::vector<double> per_example_kl, per_example_ce;
};

// The metrics of `student` on `examples`, forward only, in batches of about `batch_tokens` tokens
// (at least one example each). orchard::Error for an example whose teacher ids or targets fall
// outside the student's vocabulary.
TeacherMetrics score_examples(train::FastModel& student, std::span<const train::Example> examples,
                              int64_t batch_tokens = 4096);

}  // namespace orchard::distill
