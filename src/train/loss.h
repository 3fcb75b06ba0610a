// The training losses over a model's logits, each giving the loss and its gradient with respect to
// the logits, so that the backward pass starts from them (issue 17; the oracle definitions are in
// shared/train/README.md). Plain functions in the manner of llm.c: float32 in and out, double
// inside, one row of logits at a time (no [n, V] double buffer).
//
// Notation. z = logits [n, V], row i is position i. A mask [n] (1 = the position counts; empty =
// all count) selects the set M of positions; every loss is a mean over M, and rows outside M get a
// zero gradient. T is the temperature. For distillation, K_i = the teacher's k stored ids at
// position i and p_ic (c in K_i) their stored probabilities: softmax(zt_i / T) renormalized over
// K_i, so sum_{c in K_i} p_ic = 1 (checked within 1e-3). Terms with a zero probability are zero.
//
//   cross-entropy (next token; targets[i] is row i's target, e.g. tokens[i + 1]):
//     CE  = -(1/|M|) * sum_{i in M} log_softmax(z_i)[targets[i]]
//     dCE/dz_ij = (softmax(z_i)_j - [j == targets[i]]) / |M|
//
//   forward KL(teacher || student) over the teacher's top k, student over the FULL vocabulary:
//     s_i  = log_softmax(z_i / T)   (all V columns), q_i = exp(s_i)
//     FKL  = T^2 * (1/|M|) * sum_{i in M} sum_{c in K_i} p_ic * (log p_ic - s_ic)
//     dFKL/dz_ij = (T/|M|) * (P_i * q_ij - p_ij [j in K_i]),  P_i = sum_{c in K_i} p_ic (= 1)
//   (as the README says, not zero when student = teacher: the student's mass outside K_i counts.)
//
//   reverse KL(student || teacher) and JSD(beta) use the STUDENT RESTRICTED TO K_i AND RENORMALIZED
//   there (columns outside K_i play no part and get a zero gradient):
//     r_ic = exp(z_ic / T) / sum_{c' in K_i} exp(z_ic' / T),  c in K_i
//     RKL  = T^2 * (1/|M|) * sum_{i in M} sum_{c in K_i} r_ic * (log r_ic - log p_ic)
//            (infinite, hence refused, where some p_ic = 0)
//     JSD(beta) = T^2 * (1/|M|) * sum_{i in M} [ beta * KL(p_i || m_i) + (1 - beta) * KL(r_i || m_i) ],
//            m_i = beta * p_i + (1 - beta) * r_i,  0 <= beta <= 1  (the generalized JSD of GKD)
//     so JSD(beta)/beta -> KL(p || r) as beta -> 0 and JSD(beta)/(1 - beta) -> KL(r || p) = RKL as
//     beta -> 1 (both ends are 0); beta = 1/2 is the symmetric Jensen-Shannon divergence.
//     Gradients: with f_c the per-column derivative with respect to r (RKL: log r_c - log p_c + 1;
//     JSD: (1 - beta) * log(r_c / m_c)), dL/dz_ij = (T/|M|) * r_ij * (f_j - sum_c r_ic f_c).
//
//   the mix:  L = alpha * KD + (1 - alpha) * CE,  0 <= alpha <= 1, each with its own mask.
//
// Every function throws orchard::Error naming what is wrong: sizes that disagree, a NaN or infinite
// logit (row, column), a target or teacher id outside [0, V), a repeated teacher id, a bad
// probability, a mask that counts no position, a temperature <= 0, beta or alpha outside [0, 1].
#pragma once
#include <cstdint>
#include <span>

namespace orchard::train {

// A teacher's stored top k per position: ids [n, k] and probabilities [n, k] (each row sums to 1).
struct TeacherTopK {
  int64_t k = 0;
  std::span<const int32_t> ids;
  std::span<const float> probs;
};

enum class Divergence { forward_kl, reverse_kl, jsd };

struct KdOptions {
  Divergence divergence = Divergence::forward_kl;
  double temperature = 2.0;
  double beta = 0.5;  // JSD only
};

// logits [n, V]; targets [n] (ignored where the mask is 0); mask [n] or empty; grad [n, V] or empty
// (no gradient). Returns CE.
double cross_entropy(std::span<const float> logits, int64_t n, int64_t V, std::span<const int32_t> targets,
                     std::span<const uint8_t> mask, std::span<float> grad);

// logits [n, V]; teacher ids/probs [n, k]; mask [n] or empty; grad [n, V] or empty. Returns FKL,
// RKL or JSD(beta) as `options` says.
double distill_loss(std::span<const float> logits, int64_t n, int64_t V, const TeacherTopK& teacher,
                    const KdOptions& options, std::span<const uint8_t> mask, std::span<float> grad);

// alpha * distill_loss(..., kd_mask) + (1 - alpha) * cross_entropy(..., ce_mask), the gradient
// combined in double before it is rounded to float32. Shapes as above.
double distill_mix(std::span<const float> logits, int64_t n, int64_t V, double alpha, const TeacherTopK& teacher,
                   const KdOptions& options, std::span<const uint8_t> kd_mask, std::span<const int32_t> targets,
                   std::span<const uint8_t> ce_mask, std::span<float> grad);

}  // namespace orchard::train
