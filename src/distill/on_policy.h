// On-policy distillation (GKD, issue 18): the student answers the training prompts itself and the
// teacher scores the student's answers, so the student learns where its own samples go rather than
// only where the teacher's go (Agarwal et al., "On-Policy Distillation of Language Models").
//
// make_on_policy gives the trainer's OnPolicy (train/trainer.h: which steps, how they are trained).
// Its generator, for each prompt of an on-policy step:
//   1. samples an answer from the student's CURRENT weights: one full forward of the growing sequence
//      per new token (FastModel::loss_only, all the step's prompts in one batch; no KV cache, which is
//      fine for the small students this is meant for), at `temperature` (0: greedy), until EOS or
//      max_tokens (or the sequence limit), from a generator seeded by (seed, step, index), so a
//      step's answers depend only on the weights and the step;
//   2. decodes the answer to text and has the teacher score it (TeacherClient::score: completions with
//      echo, the answer's tokens with their top k), `concurrency` requests at a time, a client each;
//   3. turns prompt, answer and scores into a TeacherRecord and that into the student's Example with
//      to_examples (the mapping of teacher_data.h), its CE mask cleared: on-policy steps train on the
//      KD rows alone.
// The prompt's text is the decoded prompt ids of the example (the rows up to its first CE row, a
// leading BOS dropped; special tokens kept as text, so a chat-rendered prompt reaches the teacher as
// rendered); to_examples encodes it again as the student's prompt. EOS is never scored (the echo
// scores text), so nothing teaches the student where to stop. An empty answer, or one the teacher
// could not score, gives no example; a prompt that the teacher cannot be reached for fails the step
// (after the client's retries).
#pragma once
#include <cstdint>
#include <functional>

#include "distill/teacher_client.h"
#include "distill/teacher_data.h"
#include "train/fast_model.h"
#include "train/trainer.h"

namespace orchard::distill {

// What one on-policy step's generation did (for the log).
struct OnPolicyBatch {
  int64_t step = 0;
  int64_t prompts = 0, answers = 0;  // answers: examples handed back (with at least one KD row)
  int64_t sampled_tokens = 0;        // the student's answer tokens (EOS not counted)
  int64_t stopped = 0;               // answers that ended with EOS
  double sample_seconds = 0, teacher_seconds = 0;
};

struct OnPolicyOptions {
  double lambda = 0;  // the fraction of on-policy steps
  TeacherClientOptions teacher;
  int top_k = 20;       // the teacher's top k per answer token, 1 to 20
  int max_tokens = 64;  // the longest answer
  double temperature = 1.0;
  uint64_t seed = 0;
  int concurrency = 4;  // teacher requests at a time
  std::function<void(const OnPolicyBatch&)> on_batch;  // called after each step's generation, if set
};

// `student` and `vocab` must outlive the returned OnPolicy (the trainer calls it during run()).
// Throws orchard::Error for options out of range, naming them.
train::OnPolicy make_on_policy(const OnPolicyOptions& options, train::FastModel& student, const StudentVocab& vocab,
                               const MappingOptions& mapping);

// Step 1 alone, for tests: the sampled answers' ids (EOS not included) for the prompts' ids.
// `stopped[i]` says whether answer i ended with EOS.
std::vector<std::vector<int32_t>> sample_answers(train::FastModel& student, const std::vector<std::vector<int32_t>>& prompts,
                                                 std::span<const int32_t> eos, int max_tokens, int64_t max_seq,
                                                 double temperature, uint64_t seed, int64_t step,
                                                 std::vector<bool>* stopped = nullptr);

}  // namespace orchard::distill
