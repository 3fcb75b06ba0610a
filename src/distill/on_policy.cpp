#include "distill/on_policy.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "base/error.h"
#include "tokenizer/api_token_text.h"

namespace orchard::distill {
namespace {

// splitmix64, to seed each answer's generator from (seed, step, index).
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One draw from softmax(row / temperature) (temperature 0: the first largest), in double.
int32_t sample_row(std::span<const float> row, double temperature, std::mt19937_64& rng) {
  const auto largest = std::max_element(row.begin(), row.end());
  if (temperature <= 0) return static_cast<int32_t>(largest - row.begin());
  const double mx = *largest;
  std::vector<double> weights(row.size());
  double sum = 0;
  for (size_t j = 0; j < row.size(); ++j) sum += weights[j] = std::exp((row[j] - mx) / temperature);
  const double u = static_cast<double>(rng() >> 11) * 0x1p-53 * sum;  // 53 bits: the same on every platform
  double acc = 0;
  for (size_t j = 0; j < row.size(); ++j)
    if ((acc += weights[j]) > u && weights[j] > 0) return static_cast<int32_t>(j);
  for (size_t j = row.size(); j-- > 0;)  // rounding left u at the very top: the last token with mass
    if (weights[j] > 0) return static_cast<int32_t>(j);
  return static_cast<int32_t>(largest - row.begin());
}

// The prompt of a training example: its ids up to the first CE row's target (the first KD row's
// when it has no CE row; all of it when neither).
std::vector<int32_t> prompt_ids(const train::Example& e) {
  auto first = std::find(e.ce_mask.begin(), e.ce_mask.end(), 1);
  if (first == e.ce_mask.end()) {
    first = std::find(e.kd_mask.begin(), e.kd_mask.end(), 1);
    if (first == e.kd_mask.end()) return e.tokens;
    const size_t r = static_cast<size_t>(first - e.kd_mask.begin());
    return std::vector<int32_t>(e.tokens.begin(), e.tokens.begin() + static_cast<std::ptrdiff_t>(std::min(r + 1, e.tokens.size())));
  }
  const size_t r = static_cast<size_t>(first - e.ce_mask.begin());
  return std::vector<int32_t>(e.tokens.begin(), e.tokens.begin() + static_cast<std::ptrdiff_t>(std::min(r + 1, e.tokens.size())));
}

// Where the teacher's tokens that spell `answer` begin: the shortest suffix of `tokens` whose bytes
// are the answer's. The echo's tokens past the prompt may include some of the prompt's own where a
// teacher's offsets do not index the prompt's text (Orchard's server counted a BOS's text and
// SentencePiece's first space before 2026-12-05; other servers may still). nullopt when no suffix
// spells it (a token across the boundary): that answer gives no example.
std::optional<size_t> spelling_suffix(const std::vector<std::string>& tokens, const std::string& answer) {
  std::string suffix;
  for (size_t j = tokens.size(); j-- > 0;) {
    suffix.insert(0, api_token_bytes(tokens[j]));
    if (suffix.size() == answer.size()) return suffix == answer ? std::optional<size_t>(j) : std::nullopt;
    if (suffix.size() > answer.size()) return std::nullopt;
  }
  return std::nullopt;
}

// The clients persist from step to step (kept-alive connections), one per worker thread.
struct State {
  OnPolicyOptions options;
  MappingOptions mapping;
  train::FastModel* student = nullptr;
  const StudentVocab* vocab = nullptr;
  std::vector<int32_t> eos;
  int64_t max_seq = 0;
  std::vector<std::unique_ptr<TeacherClient>> clients;
};

std::vector<train::Example> generate(State& s, std::span<const train::Example* const> batch, int64_t step) {
  OnPolicyBatch report{.step = step, .prompts = static_cast<int64_t>(batch.size())};
  const Tokenizer& tok = s.vocab->tokenizer();
  const std::optional<int32_t> bos = tok.bos_id();

  // 1. The student's answers, sampled from its weights as they are now.
  auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> prompts;
  for (const train::Example* e : batch) prompts.push_back(prompt_ids(*e));
  std::vector<bool> stopped;
  const std::vector<std::vector<int32_t>> answers = sample_answers(
      *s.student, prompts, s.eos, s.options.max_tokens, s.max_seq, s.options.temperature, s.options.seed, step, &stopped);
  report.sample_seconds = seconds_since(start);

  // 2. Their texts. The answer's text is the whole text less the prompt's, so that a leading space
  // the decoder drops at the start of a text is kept. An empty prompt (a "text" line's BOS alone)
  // takes the answer's first token: the echo gives the first token of a text no log-probability.
  std::vector<TeacherRecord> records(batch.size());
  std::vector<bool> wanted(batch.size(), false);
  for (size_t i = 0; i < batch.size(); ++i) {
    std::vector<int32_t> ids = prompts[i];
    if (!ids.empty() && bos && ids.front() == *bos) ids.erase(ids.begin());
    std::string prompt = tok.decode(ids);
    size_t taken = 0;
    if (prompt.empty() && !answers[i].empty()) {
      ids.push_back(answers[i].front());
      prompt = tok.decode(ids);
      taken = 1;
    }
    std::vector<int32_t> all = ids;
    all.insert(all.end(), answers[i].begin() + static_cast<std::ptrdiff_t>(taken), answers[i].end());
    const std::string whole = tok.decode(all);
    std::string answer = whole.starts_with(prompt)
                             ? whole.substr(prompt.size())
                             : tok.decode(std::span(answers[i]).subspan(taken));
    report.sampled_tokens += static_cast<int64_t>(answers[i].size());
    report.stopped += stopped[i];
    records[i].id = static_cast<int64_t>(i);
    records[i].line = batch[i]->line;
    records[i].prompt = std::move(prompt);
    records[i].completion = std::move(answer);
    wanted[i] = !records[i].completion.empty() && !records[i].prompt.empty();
  }

  // 3. The teacher's scores, `concurrency` requests at a time.
  start = std::chrono::steady_clock::now();
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::string error;
  const size_t workers = std::min(s.clients.size(), batch.size());
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      for (size_t i; (i = next++) < batch.size();) {
        if (!wanted[i]) continue;
        try {
          ScoredText scored = s.clients[w]->score(records[i].prompt, records[i].completion, s.options.top_k);
          if (const std::optional<size_t> start = spelling_suffix(scored.tokens, records[i].completion)) {
            const auto from = static_cast<std::ptrdiff_t>(*start);
            records[i].tokens.assign(scored.tokens.begin() + from, scored.tokens.end());
            records[i].logprobs.assign(scored.logprobs.begin() + from, scored.logprobs.end());
            records[i].top.assign(scored.top.begin() + from, scored.top.end());
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(error_mutex);
          if (error.empty()) error = str_cat("the answer to the example of line ", records[i].line, ": ", e.what());
          next = batch.size();  // the step fails: no more requests
        }
      }
    });
  for (std::thread& t : threads) t.join();
  if (!error.empty()) fail(error);
  report.teacher_seconds = seconds_since(start);

  // 4. The student's examples: the teacher's tokens and top k on the answer's rows, KD only.
  std::vector<TeacherRecord> scored;
  std::vector<const train::Example*> of;
  for (size_t i = 0; i < batch.size(); ++i)
    if (wanted[i] && !records[i].tokens.empty()) scored.push_back(std::move(records[i])), of.push_back(batch[i]);
  std::vector<train::Example> out;
  if (!scored.empty()) {
    std::vector<train::Example> examples = to_examples(scored, *s.vocab, s.mapping, nullptr, str_cat("on-policy step ", step));
    if (examples.size() != scored.size())
      fail("on-policy step ", step, ": ", scored.size(), " answers became ", examples.size(), " examples");
    for (size_t i = 0; i < examples.size(); ++i) {
      train::Example& e = examples[i];
      std::fill(e.ce_mask.begin(), e.ce_mask.end(), uint8_t{0});
      if (!e.has_teacher() || std::find(e.kd_mask.begin(), e.kd_mask.end(), 1) == e.kd_mask.end()) continue;
      e.weight = of[i]->weight;
      e.line = of[i]->line;
      out.push_back(std::move(e));
    }
  }
  report.answers = static_cast<int64_t>(out.size());
  if (s.options.on_batch) s.options.on_batch(report);
  return out;
}

}  // namespace

std::vector<std::vector<int32_t>> sample_answers(train::FastModel& student, const std::vector<std::vector<int32_t>>& prompts,
                                                 std::span<const int32_t> eos, int max_tokens, int64_t max_seq,
                                                 double temperature, uint64_t seed, int64_t step,
                                                 std::vector<bool>* stopped) {
  const size_t n = prompts.size();
  std::vector<std::vector<int32_t>> answers(n);
  std::vector<bool> done(n, false), ended(n, false);
  std::vector<std::mt19937_64> rngs;
  for (size_t i = 0; i < n; ++i) rngs.emplace_back(mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ i));
  for (size_t i = 0; i < n; ++i) done[i] = prompts[i].empty() || static_cast<int64_t>(prompts[i].size()) >= max_seq;
  for (int t = 0; t < max_tokens; ++t) {
    std::vector<size_t> active;
    std::vector<std::vector<int32_t>> seqs;
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      active.push_back(i);
      seqs.push_back(prompts[i]);
      seqs.back().insert(seqs.back().end(), answers[i].begin(), answers[i].end());
    }
    if (active.empty()) break;
    std::vector<std::vector<float>> last(active.size());
    student.loss_only(seqs, [&](size_t k, std::span<const float> logits, std::span<float>) {
      const size_t T = seqs[k].size(), V = logits.size() / T;
      last[k].assign(logits.end() - static_cast<std::ptrdiff_t>(V), logits.end());
      return 0.0;
    });
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t i = active[k];
      for (float v : last[k])
        if (!std::isfinite(v)) fail("on-policy sampling at step ", step, ": the student's logits are not finite");
      const int32_t id = sample_row(last[k], temperature, rngs[i]);
      if (std::find(eos.begin(), eos.end(), id) != eos.end()) {
        done[i] = ended[i] = true;
        continue;
      }
      answers[i].push_back(id);
      if (static_cast<int64_t>(prompts[i].size() + answers[i].size()) >= max_seq) done[i] = true;
    }
  }
  if (stopped) *stopped = ended;
  return answers;
}

train::OnPolicy make_on_policy(const OnPolicyOptions& options, train::FastModel& student, const StudentVocab& vocab,
                               const MappingOptions& mapping) {
  if (!(options.lambda >= 0 && options.lambda <= 1)) fail("--on-policy ", options.lambda, ": must be from 0 to 1");
  if (options.top_k < 1 || options.top_k > 20) fail("on-policy: the teacher's top k ", options.top_k, " must be from 1 to 20");
  if (options.max_tokens < 1) fail("--on-policy-max-tokens ", options.max_tokens, ": must be at least 1");
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    fail("--on-policy-temperature ", options.temperature, ": must be >= 0 (0: greedy)");
  if (options.concurrency < 1) fail("on-policy: concurrency ", options.concurrency, " must be at least 1");
  auto state = std::make_shared<State>();
  state->options = options;
  state->mapping = mapping;
  state->mapping.reasoning = false;
  state->mapping.truncate = true;  // the teacher's tokens may outnumber the student's: cut, not refuse
  state->student = &student;
  state->vocab = &vocab;
  state->eos = vocab.tokenizer().eos_ids();
  const int64_t context = student.config().context_length > 0 ? student.config().context_length : 2048;
  state->max_seq = mapping.max_seq > 0 ? std::min(mapping.max_seq, context) : context;
  state->mapping.max_seq = state->max_seq;
  for (int i = 0; i < options.concurrency; ++i) state->clients.push_back(std::make_unique<TeacherClient>(options.teacher));
  return {.lambda = options.lambda, .generate = [state](std::span<const train::Example* const> batch, int64_t step) {
            return generate(*state, batch, step);
          }};
}

}  // namespace orchard::distill
