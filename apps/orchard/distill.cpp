// The distillation commands of issue 18: collect (a teacher's answers), train (a student on them),
// eval (a student against held-out answers). Each command's flags are above its function.
//
// orchard distill collect --teacher URL [--api-key-env VAR] [--endpoint chat|completions]
//   --prompts FILE --out DATA.jsonl [--model NAME] [--concurrency N] [--rate R] [--top-logprobs K]
//   [--samples S] [--max-tokens M] [--temperature T] [--retries N] [--timeout SECONDS] [--ca-file PEM]
//
// A teacher's answers, reasoning and top-k log-probabilities from an OpenAI-compatible endpoint
// (src/distill/collect.h has the output's format and its crash-safety). Exit code 0 when every
// (id, sample) is in the output, 1 when some failed after their retries (a rerun tries them again).
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "command.h"
#include "distill/collect.h"
#include "distill/metrics.h"
#include "distill/on_policy.h"
#include "distill/teacher_client.h"
#include "distill/teacher_data.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "progress.h"
#include "train/adapter_io.h"
#include "train/fast_model.h"
#include "train_run.h"

namespace orchard::cli {
namespace {

// The API key from the environment variable --api-key-env names (empty without the flag).
std::string api_key_from(const std::string& command, const std::string& key_env) {
  if (key_env.empty()) return "";
  const char* key = std::getenv(key_env.c_str());
  if (!key || !*key) fail(command, ": the environment variable ", key_env, " (--api-key-env) is not set");
  return key;
}

distill::Endpoint parse_endpoint(const std::string& command, const std::string& endpoint) {
  if (endpoint == "chat") return distill::Endpoint::chat;
  if (endpoint == "completions") return distill::Endpoint::completions;
  fail(command, ": --endpoint must be chat or completions, not ", endpoint);
}

int distill_collect(Args& args) {
  distill::CollectOptions o;
  o.teacher = args.require("teacher");
  const std::string key_env = args.get_or("api-key-env", "");
  const std::string endpoint = args.get_or("endpoint", "chat");
  o.prompts_path = args.require("prompts");
  o.out_path = args.require("out");
  o.model = args.get_or("model", "");
  o.concurrency = static_cast<int>(args.get_int("concurrency").value_or(4));
  o.rate = args.get_double("rate").value_or(0);
  o.top_logprobs = static_cast<int>(args.get_int("top-logprobs").value_or(20));
  o.samples = static_cast<int>(args.get_int("samples").value_or(1));
  o.max_tokens = static_cast<int>(args.get_int("max-tokens").value_or(256));
  o.temperature = args.get_double("temperature").value_or(1.0);
  o.retries = static_cast<int>(args.get_int("retries").value_or(6));
  o.timeout_seconds = args.get_double("timeout").value_or(300);
  o.ca_file = args.get_or("ca-file", "");
  args.finish();
  o.endpoint = parse_endpoint("distill collect", endpoint);
  o.api_key = api_key_from("distill collect", key_env);
  const bool tty = ::isatty(2) != 0;
  double last_line = -10;
  int64_t last_count = -1;
  o.progress = [&](const distill::CollectProgress& p) {
    const bool end = p.done + p.failed >= p.total;
    if (p.done + p.failed == last_count) return;
    if (!end && p.seconds - last_line < (tty ? 0.2 : 5.0)) return;  // a log gets a line every 5 s
    last_line = p.seconds;
    last_count = p.done + p.failed;
    std::fprintf(
        stderr, "%scollect: %" PRId64 "/%" PRId64 " done, %" PRId64 " failed, %" PRId64 " tokens, %.0f tok/s, ETA %s%s",
        tty ? "\r" : "", p.done, p.total, p.failed, p.tokens, p.seconds > 0 ? p.tokens / p.seconds : 0.0,
        eta_text(p.eta_seconds).c_str(), tty ? "   " : "\n");
    std::fflush(stderr);
  };
  const distill::CollectReport r = distill::collect(o);
  if (tty) std::fputc('\n', stderr);
  for (const distill::CollectFailure& f : r.failures)
    std::fprintf(stderr, "failed: id %s sample %d: %s\n", f.id.dump().c_str(), f.sample, f.reason.c_str());
  std::printf("%" PRId64 " prompts x %d samples: %" PRId64 " already in %s, %" PRId64 " written (%" PRId64
              " tokens, %" PRId64 " requests), %zu failed\n",
              r.prompts, o.samples, r.already_done, o.out_path.c_str(), r.written, r.tokens, r.requests,
              r.failures.size());
  return r.failures.empty() ? 0 : 1;
}

// JSON for a number that may be NaN (no rows to average over): null.
nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json numbers_or_null(const std::vector<double>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (double v : values) out.push_back(number_or_null(v));
  return out;
}

void print_mapping(const std::string& command, const std::string& path, const distill::MappingStats& s) {
  std::fprintf(stderr,
               "%s: %s: %" PRId64 " records (%" PRId64 " exact, %" PRId64 " partial, %" PRId64 " sft_only), %" PRId64
               " answer tokens, %" PRId64 " KD rows, %" PRId64 " reasoning sequences; dropped %" PRId64
               " top-k entries, mass %.4g (%.3g per KD row)\n",
               command.c_str(), path.c_str(), s.records, s.exact, s.partial, s.sft_only, s.answer_tokens, s.kd_rows,
               s.rationale_examples, s.dropped_entries, s.dropped_mass,
               s.kd_rows > 0 ? s.dropped_mass / static_cast<double>(s.kd_rows) : 0.0);
  if (s.sft_only > 0 && !s.first_unmapped.empty())
    std::fprintf(stderr,
                 "%s: sft_only records (cross-entropy only: a token the student's vocabulary lacks), first: %s\n",
                 command.c_str(), s.first_unmapped.c_str());
}

// orchard distill train --model STUDENT --data COLLECTED(.jsonl|pack) [--eval HELD_OUT(.jsonl|pack)] --out DIR
//   [--no-reasoning] [every orchard train flag]
//
// orchard train on a teacher's collected answers: the records mapped to the student's ids
// (teacher_data.h), and at each evaluation (--eval-every, and the run's last step) the student's
// teacher metrics on the held-out set (metrics.h) in that step's log.jsonl line as
//   "eval": {"agreement": A, "kl": K, "ce": C, "rows": N}
// beside orchard train's fields (step, loss, lr, grad_norm, tokens, tokens_per_s, eval_loss).
//
// On-policy distillation (GKD; distill/on_policy.h, train/trainer.h's OnPolicy):
//   --on-policy LAMBDA --teacher URL [--api-key-env VAR] [--ca-file PEM] [--on-policy-max-tokens N (64)]
//   [--on-policy-temperature T (1)] [--on-policy-top-k K (20)] [--on-policy-concurrency N (4)]
// A fraction LAMBDA of the steps (drawn from --seed and the step) train on the student's own answers
// to the step's prompts, scored by the teacher at URL (completions with echo), with --loss's
// divergence on the answer rows alone; the other steps train on the data as without the flag. Each
// step's log line gains "on_policy" (true or false), and an on-policy step's "generation": its
// prompts, the answers kept, the student's sampled tokens, the answers that ended with EOS, and the
// seconds spent sampling and waiting for the teacher. The teacher's scores are not in the checkpoint:
// a --resume repeats the same steps bit for bit only with a deterministic teacher.
int distill_train(Args& args) {
  const std::string command = "orchard distill train";
  const bool reasoning = !args.flag("no-reasoning");
  const std::optional<double> lambda = args.get_double("on-policy");
  distill::OnPolicyOptions on_policy;
  if (lambda) {
    on_policy.lambda = *lambda;
    on_policy.teacher.url = args.require("teacher");
    on_policy.teacher.api_key = api_key_from(command, args.get_or("api-key-env", ""));
    on_policy.teacher.ca_file = args.get_or("ca-file", "");
    on_policy.max_tokens = static_cast<int>(args.get_int("on-policy-max-tokens").value_or(64));
    on_policy.temperature = args.get_double("on-policy-temperature").value_or(1.0);
    on_policy.top_k = static_cast<int>(args.get_int("on-policy-top-k").value_or(20));
    on_policy.concurrency = static_cast<int>(args.get_int("on-policy-concurrency").value_or(4));
  }
  std::unique_ptr<distill::StudentVocab> on_policy_vocab;  // lives through the run: the generator reads it
  distill::OnPolicyBatch generation;                       // the last on-policy step's, for its log line
  const TrainDataLoader loader = [&](const std::string& path, const Model& model, int64_t max_seq, bool truncate) {
    const distill::StudentVocab vocab(load_model_tokenizer(model));
    distill::MappingStats stats;
    std::vector<train::Example> examples = distill::load_teacher_examples(
        path, vocab, {.reasoning = reasoning, .max_seq = max_seq, .truncate = truncate}, &stats);
    print_mapping(command, path, stats);
    return examples;
  };
  TrainHooks hooks;
  hooks.name = command;
  if (lambda)
    hooks.before_run = [&](train::Trainer& trainer, train::FastModel& fast, const Model& model) {
      on_policy_vocab = std::make_unique<distill::StudentVocab>(load_model_tokenizer(model));
      on_policy.seed = trainer.config().seed;
      on_policy.on_batch = [&](const distill::OnPolicyBatch& b) { generation = b; };
      trainer.set_on_policy(distill::make_on_policy(on_policy, fast, *on_policy_vocab, {.reasoning = false}));
    };
  hooks.after_step = [&, on = lambda.has_value()](const TrainRun& run, const train::StepReport& r,
                                                   nlohmann::ordered_json& line) {
    if (on) line["on_policy"] = r.on_policy;
    if (on && r.on_policy && generation.step == r.step)
      line["generation"] = {{"prompts", generation.prompts}, {"answers", generation.answers},
                            {"sampled_tokens", generation.sampled_tokens}, {"stopped", generation.stopped},
                            {"sample_s", generation.sample_seconds}, {"teacher_s", generation.teacher_seconds}};
    if (run.eval.empty() || (!r.evaluated && r.step != run.last_step)) return;
    const distill::TeacherMetrics m = distill::score_examples(run.fast, run.eval);
    line["eval"] = {{"agreement", number_or_null(m.agreement)},
                    {"kl", number_or_null(m.kl)},
                    {"ce", number_or_null(m.ce)},
                    {"rows", m.rows}};
  };
  // Distillation's defaults: forward KL to the teacher's top k mixed half and half with the CE of
  // its sampled answer. At T = 1 the KL is the teacher's own distribution (what the stored top k
  // are: collected at the teacher's temperature 1), and the CE half keeps the student on the answer
  // tokens where the top k carries little mass or a row was dropped. --loss ce trains on the answers
  // alone (SFT); --kd-alpha 1 on the top k alone.
  return run_training(args, loader, hooks, {.loss = "kd", .kd_alpha = 0.5, .kd_temperature = 1.0});
}

// ---------------------------------------------------------------------------------------------
// orchard distill eval --student MODEL [--adapter DIR]
//   (--data HELD_OUT(.jsonl|pack) | --teacher URL --prompts HELD_OUT_PROMPTS [--endpoint completions|chat]
//    [--cache FILE] [--api-key-env VAR] [--ca-file PEM] [--model NAME] [--top-logprobs K] [--temperature T]
//    [--concurrency N])
//   [--teacher-score] [--max-tokens N] [--out EVAL.json] [--batch-tokens T] [--threads N] [--max-seq N] [--truncate]
//
// The student's teacher metrics (metrics.h) on held-out collected data, as one JSON object:
//   {"student", "data", "examples", "rows", "agreement", "kl", "ce", "per_example": {"kl": [...], "ce": [...]}}
// (per_example: one entry per example in file order, null where it has no such rows). With
// --teacher the prompts are collected first (distill collect, into --cache: default EVAL.json's
// name + ".teacher.jsonl", or a temporary file without --out; an existing cache is resumed). With
// --teacher-score the student's own greedy answers (temperature 0, --max-tokens, the data's prompt
// encoding) are scored by the teacher (TeacherClient::score) and the object gains
//   "teacher_score": {"mean_logprob_per_token", "tokens", "answers",
//                     "per_answer": [{"id", "text", "tokens", "logprob" (the answer's sum)}, ...]},
//   "teacher_self_logprob_per_token", "teacher_self_tokens"
// the last two the same mean over the teacher's own collected answers' chosen logprobs, for
// reference. Text prompts only: a chat prompt has no text the completions endpoint could score
// the answer after.

// The student's greedy answers to the text prompts of `records` (one per id), each scored by the
// teacher, into out["teacher_score"]; the teacher's own answers' mean into out.
void teacher_score(const std::shared_ptr<const Model>& student, const std::vector<distill::TeacherRecord>& records,
                   const distill::TeacherClientOptions& client_options, int64_t max_tokens, int threads,
                   nlohmann::ordered_json& out) {
  const std::shared_ptr<const Tokenizer> tokenizer = load_model_tokenizer(*student);
  Engine engine(student, tokenizer, {.slots = 1, .kernels = KernelChoice::fast, .n_threads = threads});
  distill::TeacherClient client(client_options);
  double sum = 0, self_sum = 0;
  int64_t tokens = 0, self_tokens = 0, answers = 0, skipped = 0;
  std::map<std::string, bool> seen;
  nlohmann::ordered_json per_answer = nlohmann::ordered_json::array();
  for (const distill::TeacherRecord& r : records) {
    for (double lp : r.logprobs)
      if (std::isfinite(lp)) self_sum += lp, ++self_tokens;
    if (!r.messages.is_null()) {
      ++skipped;
      continue;
    }
    if (!seen.emplace(r.id.dump(), true).second) continue;  // one answer per prompt: greedy gives the same
    GenerationJob job;
    job.prompt = tokenizer->encode(r.prompt, tokenizer->adds_bos());
    job.options.max_tokens = max_tokens;
    job.options.sampling.temperature = 0;
    std::string text;
    job.on_step = [&](const TokenStep& step) {
      text += step.text;
      return true;
    };
    const JobSummary done = engine.run(std::move(job));
    if (!done.error.empty()) fail("distill eval: the student's answer to ", r.id.dump(), ": ", done.error);
    if (text.empty()) continue;
    const distill::ScoredText scored = client.score(r.prompt, text, 0);
    double answer_sum = 0;
    for (double lp : scored.logprobs) answer_sum += lp;
    sum += answer_sum, tokens += static_cast<int64_t>(scored.logprobs.size());
    per_answer.push_back({{"id", r.id}, {"text", text}, {"tokens", scored.logprobs.size()}, {"logprob", answer_sum}});
    ++answers;
  }
  if (skipped > 0)
    std::fprintf(stderr, "distill eval: --teacher-score skipped %" PRId64 " chat records (text prompts only)\n",
                 skipped);
  out["teacher_score"] = {
      {"mean_logprob_per_token", number_or_null(tokens > 0 ? sum / static_cast<double>(tokens) : NAN)},
      {"tokens", tokens},
      {"answers", answers},
      {"per_answer", std::move(per_answer)}};
  out["teacher_self_logprob_per_token"] =
      number_or_null(self_tokens > 0 ? self_sum / static_cast<double>(self_tokens) : NAN);
  out["teacher_self_tokens"] = self_tokens;
}

int distill_eval(Args& args) {
  namespace fs = std::filesystem;
  const std::string command = "distill eval";
  const std::string student_path = args.require("student");
  const std::optional<std::string> adapter = args.get("adapter");
  const std::optional<std::string> data_arg = args.get("data");
  const std::optional<std::string> teacher = args.get("teacher");
  const std::optional<std::string> prompts = args.get("prompts");
  const std::string endpoint = args.get_or("endpoint", "completions");
  const std::optional<std::string> cache_arg = args.get("cache");
  const std::optional<std::string> out_path = args.get("out");
  const std::string key_env = args.get_or("api-key-env", "");
  const std::string ca_file = args.get_or("ca-file", "");
  const std::string teacher_model = args.get_or("model", "");
  const int top_logprobs = static_cast<int>(args.get_int("top-logprobs").value_or(20));
  const double temperature = args.get_double("temperature").value_or(1.0);
  const int concurrency = static_cast<int>(args.get_int("concurrency").value_or(4));
  const bool score = args.flag("teacher-score");
  const int64_t max_tokens = args.get_int("max-tokens").value_or(256);
  const int64_t batch_tokens = args.get_int("batch-tokens").value_or(4096);
  const int threads = static_cast<int>(args.get_int("threads").value_or(0));
  const std::optional<int64_t> max_seq_arg = args.get_int("max-seq");
  const bool truncate = args.flag("truncate");
  args.finish();
  if (data_arg.has_value() == teacher.has_value())
    fail(command, ": give either --data HELD_OUT or --teacher URL --prompts HELD_OUT_PROMPTS");
  if (teacher && !prompts) fail(command, ": --teacher needs --prompts (the held-out prompts to collect)");
  if (!teacher && (prompts || cache_arg)) fail(command, ": --prompts and --cache go with --teacher");
  if (score && !teacher) fail(command, ": --teacher-score needs a --teacher URL to score the student's answers");
  if (max_tokens < 1) fail(command, ": --max-tokens must be at least 1, not ", max_tokens);
  if (batch_tokens < 1) fail(command, ": --batch-tokens must be at least 1, not ", batch_tokens);

  const distill::TeacherClientOptions client_options{
      .url = teacher.value_or(""), .api_key = api_key_from(command, key_env), .ca_file = ca_file};
  std::string data_path;
  std::optional<fs::path> temp_dir;
  if (teacher) {
    if (cache_arg) {
      data_path = *cache_arg;
    } else if (out_path) {
      data_path = *out_path + ".teacher.jsonl";
    } else {
      std::string dir = (fs::temp_directory_path() / "orchard-distill-eval-XXXXXX").string();
      if (!::mkdtemp(dir.data())) fail(command, ": cannot make a temporary folder for the teacher's answers");
      temp_dir = dir;
      data_path = (*temp_dir / "teacher.jsonl").string();
    }
    distill::CollectOptions o;
    o.teacher = *teacher;
    o.api_key = client_options.api_key;
    o.ca_file = ca_file;
    o.model = teacher_model;
    o.endpoint = parse_endpoint(command, endpoint);
    o.prompts_path = *prompts;
    o.out_path = data_path;
    o.concurrency = concurrency;
    o.top_logprobs = top_logprobs;
    o.max_tokens = static_cast<int>(max_tokens);
    o.temperature = temperature;
    const distill::CollectReport r = distill::collect(o);
    for (const distill::CollectFailure& f : r.failures)
      std::fprintf(stderr, "failed: id %s sample %d: %s\n", f.id.dump().c_str(), f.sample, f.reason.c_str());
    std::fprintf(stderr, "%s: %" PRId64 " prompts: %" PRId64 " already in %s, %" PRId64 " collected, %zu failed\n",
                 command.c_str(), r.prompts, r.already_done, data_path.c_str(), r.written, r.failures.size());
    if (!r.failures.empty())
      fail(command, ": ", r.failures.size(), " prompts failed at the teacher; rerun to retry them");
  } else {
    data_path = *data_arg;
  }
  struct TempCleanup {
    std::optional<fs::path> dir;
    ~TempCleanup() {
      std::error_code ec;
      if (dir) fs::remove_all(*dir, ec);
    }
  } cleanup{temp_dir};

  const std::shared_ptr<const Model> model = Model::load(student_path, {.kernels = KernelChoice::reference});
  const int64_t context = model->config().context_length > 0 ? model->config().context_length : 2048;
  const int64_t max_seq = max_seq_arg.value_or(context);
  if (max_seq < 2 || max_seq > context) fail(command, ": --max-seq ", max_seq, " must be in [2, ", context, "]");
  const distill::StudentVocab vocab(load_model_tokenizer(*model));
  distill::MappingStats stats;
  // No reasoning sequences: one example per answer, and the metrics are the answers'.
  const std::vector<train::Example> data = distill::load_teacher_examples(
      data_path, vocab, {.reasoning = false, .max_seq = max_seq, .truncate = truncate}, &stats);
  print_mapping(command, data_path, stats);
  if (data.empty()) fail(command, ": ", data_path, " gives no example to evaluate on");

  // A frozen base: LoRA mode (the adapter, or a rank-1 adapter whose B is zero) copies no weights.
  train::FastModelOptions options{.kernels = KernelChoice::fast, .n_threads = threads, .lora_rank = 1, .lora_alpha = 1};
  train::Lora lora;
  if (adapter) {
    lora = train::load_peft_adapter(*adapter, model->config());
    options.lora_rank = lora.config.rank;
    options.lora_alpha = lora.config.alpha;
    options.lora_targets = lora.config.targets;
  }
  distill::TeacherMetrics m;
  {
    train::FastModel fast(*model, options);
    if (adapter) fast.set_lora(lora);
    m = distill::score_examples(fast, data, batch_tokens);
  }
  nlohmann::ordered_json out = {{"student", student_path}};
  if (adapter) out["adapter"] = *adapter;
  out["data"] = data_path;
  out["examples"] = m.examples;
  out["rows"] = m.rows;
  out["agreement"] = number_or_null(m.agreement);
  out["kl"] = number_or_null(m.kl);
  out["ce"] = number_or_null(m.ce);
  out["per_example"] = {{"kl", numbers_or_null(m.per_example_kl)}, {"ce", numbers_or_null(m.per_example_ce)}};

  if (score) {
    // The engine generates from a model with the adapter merged in (a temporary GGUF).
    std::shared_ptr<const Model> generator = Model::load(student_path);
    std::optional<fs::path> merged_dir;
    if (adapter) {
      if (model->config().source_format != "gguf")
        fail(command, ": --teacher-score with --adapter merges the adapter, which needs a GGUF student");
      std::string dir = (fs::temp_directory_path() / "orchard-distill-merge-XXXXXX").string();
      if (!::mkdtemp(dir.data())) fail(command, ": cannot make a temporary folder for the merged student");
      merged_dir = dir;
      const std::string merged = (*merged_dir / "student.gguf").string();
      train::merge_adapter_into_gguf(student_path, lora, merged);
      generator = Model::load(merged);
    }
    TempCleanup merged_cleanup{merged_dir};
    teacher_score(generator, distill::read_records(data_path), client_options, max_tokens, threads, out);
  }
  const std::string text = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
  if (out_path) {
    std::ofstream file(*out_path, std::ios::binary | std::ios::trunc);
    file << text << "\n";
    if (!file.flush()) fail(command, ": cannot write --out ", *out_path);
  }
  return 0;
}

const RegisterCommand kCollect("distill collect",
                               "collect a teacher's answers and top-k logprobs from an OpenAI endpoint (JSONL)",
                               distill_collect);

const RegisterCommand kTrain("distill train",
                             "train a student on a teacher's collected answers (KD + CE), logging its teacher metrics",
                             distill_train, {"recompute", "truncate", "no-reasoning"});
const RegisterCommand kEval("distill eval",
                            "a student's agreement, KL and CE against a teacher's held-out answers (JSON)",
                            distill_eval, {"teacher-score", "truncate"});

}  // namespace
}  // namespace orchard::cli
