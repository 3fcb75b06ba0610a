// orchard distill pack --data COLLECTED.jsonl --student MODEL --out FILE.otk [--no-reasoning]
//   [--max-seq N] [--truncate] [--value-bits Q] [--check-logits zero|student|none] [--check-examples N]
//
// A teacher's collected answers (`orchard distill collect`'s JSONL) mapped onto a student's
// vocabulary and written as the compact pack (src/distill/teacher_data.h), which `orchard distill
// train` reads in place of the JSONL. Prints how the records mapped, the pack's bytes per answer
// token, and a check of what the pack's quantization does to the loss: each example's forward KL
// (T = 1) with its teacher rows from the JSONL and from the pack read back, under the same logits
// (all zero, or the student's own), and the largest relative difference (exit code 1 above 1e-3).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "command.h"
#include "distill/teacher_data.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "train/fast_model.h"
#include "train/loss.h"

namespace orchard::cli {
namespace {

constexpr double kLossTolerance = 1e-3;  // issue 18: the pack may move the KD loss by this much, relatively

// Forward KL (T = 1) of the example's teacher rows under all-zero logits, over the KD rows in
// chunks, so that a 150k-token vocabulary never needs a [T, V] buffer.
double zero_logits_kl(const train::Example& e, int64_t V, std::vector<float>& zeros) {
  constexpr int64_t kChunk = 32;
  const int64_t k = e.teacher_k;
  std::vector<int32_t> ids;
  std::vector<float> probs;
  double sum = 0;
  int64_t rows = 0;
  auto flush = [&] {
    const int64_t n = static_cast<int64_t>(ids.size()) / k;
    if (n == 0) return;
    if (static_cast<int64_t>(zeros.size()) < n * V) zeros.assign(static_cast<size_t>(n * V), 0.0f);
    const train::TeacherTopK t{.k = k, .ids = ids, .probs = probs};
    sum += n *
           train::distill_loss(std::span(zeros).first(static_cast<size_t>(n * V)), n, V, t, {.temperature = 1}, {}, {});
    rows += n;
    ids.clear();
    probs.clear();
  };
  for (int64_t i = 0; i < e.size(); ++i) {
    if (!e.kd_mask[i]) continue;
    ids.insert(ids.end(), e.teacher_ids.begin() + i * k, e.teacher_ids.begin() + (i + 1) * k);
    probs.insert(probs.end(), e.teacher_probs.begin() + i * k, e.teacher_probs.begin() + (i + 1) * k);
    if (static_cast<int64_t>(ids.size()) / k == kChunk) flush();
  }
  flush();
  return rows ? sum / rows : 0;
}

int distill_pack(Args& args) {
  const std::string data = args.require("data");
  const std::string student = args.require("student");
  const std::string out = args.require("out");
  distill::MappingOptions options;
  options.reasoning = !args.flag("no-reasoning");
  const std::optional<int64_t> max_seq = args.get_int("max-seq");
  options.truncate = args.flag("truncate");
  const std::string check = args.get_or("check-logits", "zero");
  const int64_t check_examples = args.get_int("check-examples").value_or(-1);
  const int64_t value_bits = args.get_int("value-bits").value_or(10);
  args.finish();
  if (value_bits < 4 || value_bits > 16) fail("distill pack: --value-bits ", value_bits, ": must be in [4, 16]");
  if (check != "zero" && check != "student" && check != "none")
    fail("distill pack: --check-logits must be zero, student or none, not ", check);

  // No packed copy of the weights: only the tokenizer, the context and (for the check) FastModel's
  // forward, which reads the weights as stored.
  const std::shared_ptr<const Model> model = Model::load(student, {.kernels = KernelChoice::reference});
  const int64_t context = model->config().context_length > 0 ? model->config().context_length : 2048;
  options.max_seq = max_seq.value_or(context);
  if (options.max_seq < 2) fail("distill pack: --max-seq ", options.max_seq, ": must be at least 2");
  const distill::StudentVocab vocab(load_model_tokenizer(*model));
  const int64_t V = vocab.tokenizer().vocab_size();

  const std::vector<distill::TeacherRecord> records = distill::read_records(data);
  if (records.empty()) fail(data, ": no records");
  distill::MappingStats m;
  const std::vector<train::Example> examples = distill::to_examples(records, vocab, options, &m, data);
  if (examples.empty()) fail(data, ": no example to train on");
  distill::PackStats p;
  distill::write_pack(out, examples, V, &p, static_cast<int>(value_bits));
  const std::vector<train::Example> back = distill::read_pack(out, V);
  if (back.size() != examples.size()) fail(out, ": read back ", back.size(), " examples of ", examples.size());

  std::printf("records: %" PRId64 " (exact %" PRId64 ", partial %" PRId64 ", sft_only %" PRId64 ")\n", m.records,
              m.exact, m.partial, m.sft_only);
  if (!m.first_unmapped.empty()) std::printf("first sft_only record: %s\n", m.first_unmapped.c_str());
  std::printf("examples: %zu (%" PRId64 " reasoning sequences)\n", examples.size(), m.rationale_examples);
  std::printf("answer tokens: %" PRId64 ", KD rows: %" PRId64 "\n", m.answer_tokens, m.kd_rows);
  std::printf("dropped top-k entries: %" PRId64 ", teacher mass %.6g (%.3g per KD row)\n", m.dropped_entries,
              m.dropped_mass, m.kd_rows ? m.dropped_mass / static_cast<double>(m.kd_rows) : 0.0);
  const double per_token = m.answer_tokens ? static_cast<double>(p.bytes) / static_cast<double>(m.answer_tokens) : 0.0;
  const double teacher_per_token =
      m.answer_tokens ? static_cast<double>(p.teacher_bytes) / static_cast<double>(m.answer_tokens) : 0.0;
  std::printf("pack: %s, %" PRId64 " bytes (%" PRId64
              " of them teacher rows), %.2f bytes per answer token (teacher %.2f)\n",
              out.c_str(), p.bytes, p.teacher_bytes, per_token, teacher_per_token);
  if (check == "none") return 0;

  // The KD-loss check: the same logits under both sets of rows.
  const int64_t n_check =
      check_examples < 0 ? static_cast<int64_t>(examples.size()) : std::min<int64_t>(check_examples, examples.size());
  double worst = 0, worst_abs = 0, sum_loss = 0;
  int64_t worst_line = 0, checked = 0;
  auto compare = [&](size_t n, double a, double b) {
    const double rel = std::fabs(a - b) / std::max(std::fabs(a), 1e-30);
    worst_abs = std::max(worst_abs, std::fabs(a - b));
    sum_loss += a;
    if (rel > worst || checked == 0) {
      worst = rel;
      worst_line = examples[n].line;
    }
    ++checked;
  };
  if (check == "zero") {
    std::vector<float> zeros;
    for (int64_t n = 0; n < n_check; ++n)
      if (examples[n].has_teacher() && std::count(examples[n].kd_mask.begin(), examples[n].kd_mask.end(), 1) > 0)
        compare(n, zero_logits_kl(examples[n], V, zeros), zero_logits_kl(back[n], V, zeros));
  } else {
    // The student's own logits, one sequence at a time; LoRA of rank 1 (B = 0) leaves the base's
    // output unchanged and spares a float32 copy of every weight.
    train::FastModel fast(*model, {.lora_rank = 1, .lora_targets = {train::LoraTarget::q}});
    const int64_t model_vocab = fast.config().n_vocab;
    for (int64_t n = 0; n < n_check; ++n) {
      const train::Example &a = examples[n], &b = back[n];
      if (!a.has_teacher() || std::count(a.kd_mask.begin(), a.kd_mask.end(), 1) == 0) continue;
      const std::vector<std::vector<int32_t>> seq = {a.tokens};
      double la = 0, lb = 0;
      fast.loss_only(seq, [&](size_t, std::span<const float> logits, std::span<float>) {
        la = train::distill_loss(logits, a.size(), model_vocab, a.teacher(), {.temperature = 1}, a.kd_mask, {});
        lb = train::distill_loss(logits, b.size(), model_vocab, b.teacher(), {.temperature = 1}, b.kd_mask, {});
        return 0.0;
      });
      compare(static_cast<size_t>(n), la, lb);
    }
  }
  const bool ok = worst <= kLossTolerance;
  std::printf("KD-loss check (forward KL, T = 1, %s logits, %" PRId64
              " examples with teacher rows): max relative "
              "difference JSONL vs pack %.3g%s (%s); largest absolute %.3g nats, mean loss %.4g nats\n",
              check.c_str(), checked, worst, checked ? str_cat(" at line ", worst_line).c_str() : "",
              ok ? "within 1e-3" : "ABOVE 1e-3", worst_abs, checked ? sum_loss / static_cast<double>(checked) : 0.0);
  return ok ? 0 : 1;
}

const RegisterCommand kPack(
    "distill pack", "map a teacher's collected answers onto a student's vocabulary and write them as a compact pack",
    distill_pack, {"no-reasoning", "truncate"});

}  // namespace
}  // namespace orchard::cli
