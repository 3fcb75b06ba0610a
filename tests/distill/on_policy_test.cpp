// On-policy distillation (distill/on_policy.h) on stories260K as the student, against an in-process
// fake teacher (httplib on loopback) that answers echo scoring as the legacy completions API does:
// greedy sampling is the argmax of one full forward; sampling at temperature 1 follows the softmax;
// the generator scores each answer once, concurrently, and hands back KD-only examples with the
// teacher's rows; a trainer at lambda 1 moves the student to the token the teacher favours.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "distill/on_policy.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "test_paths.h"
#include "train/dataset.h"
#include "train/fast_model.h"
#include "train/trainer.h"

namespace orchard::distill {
namespace {

using nlohmann::json;

const std::string kStories = "models/stories260K/stories260K.gguf";

std::shared_ptr<const Tokenizer> stories_tokenizer() {
  static auto tok = Tokenizer::load(test::source_path(kStories));
  return tok;
}

std::shared_ptr<const Model> stories_model() {
  return Model::load(test::source_path(kStories), {.kernels = KernelChoice::reference});
}

// The last row's logits of each sequence: one full forward, independent of sample_answers' loop.
std::vector<std::vector<float>> last_rows(train::FastModel& m, const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<std::vector<float>> out(seqs.size());
  m.loss_only(seqs, [&](size_t i, std::span<const float> logits, std::span<float>) {
    const size_t V = logits.size() / seqs[i].size();
    out[i].assign(logits.end() - static_cast<std::ptrdiff_t>(V), logits.end());
    return 0.0;
  });
  return out;
}

// A fake teacher: tokenizes prompt + answer with stories260K and gives every token but BOS the top 2
// {favourite: log 0.9, the token itself: log 0.1} (the favourite alone, log 1, where they agree).
// Each request waits `delay_ms`, counting the most requests in flight at once.
class FakeTeacher {
 public:
  FakeTeacher(int32_t favourite, int delay_ms) : favourite_(favourite), delay_ms_(delay_ms) {
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const int now = ++in_flight_;
      for (int seen = most_in_flight_; now > seen && !most_in_flight_.compare_exchange_weak(seen, now);) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
      const json body = json::parse(req.body);
      {
        std::lock_guard lock(mutex_);
        requests.push_back(body);
      }
      res.set_content(answer(body.at("prompt").get<std::string>()).dump(), "application/json");
      --in_flight_;
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeTeacher() {
    http_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int most_in_flight() const { return most_in_flight_; }
  std::vector<json> requests;

 private:
  // As orchard serve answers: BOS's text first, then each token's own bytes (the first word's with
  // the space SentencePiece puts before it), text_offset counting over those texts.
  json answer(const std::string& text) const {
    const Tokenizer& tok = *stories_tokenizer();
    const std::vector<int32_t> ids = tok.encode(text, true);
    json tokens = json::array(), chosen = json::array(), top = json::array(), offsets = json::array();
    size_t offset = 0;
    const std::string fav = tok.token_bytes(favourite_);
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string piece = i == 0 ? tok.token_text(ids[0]) : tok.token_bytes(ids[i]);
      offsets.push_back(offset);
      offset += piece.size();
      tokens.push_back(piece);
      if (i == 0) {
        chosen.push_back(nullptr);
        top.push_back(nullptr);
        continue;
      }
      json row = json::object();
      if (piece == fav) {
        row[fav] = 0.0;
      } else {
        row[fav] = std::log(0.9);
        row[piece] = std::log(0.1);
      }
      chosen.push_back(row[piece]);
      top.push_back(row);
    }
    return {{"object", "text_completion"},
            {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", "length"},
                          {"logprobs", {{"tokens", tokens}, {"token_logprobs", chosen}, {"top_logprobs", top},
                                        {"text_offset", offsets}}}}}}};
  }

  int32_t favourite_;
  int delay_ms_;
  httplib::Server http_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::atomic<int> in_flight_{0}, most_in_flight_{0};
};

std::vector<train::Example> prompt_examples() {
  std::vector<train::Example> out;
  const std::vector<std::string> lines = {
      R"({"prompt": "Once upon a time", "completion": " there was a dog."})",
      R"({"prompt": "Tom had a red ball.", "completion": " He liked it.", "weight": 2})",
      R"({"prompt": "The sun was hot", "completion": " and the sky was blue."})",
      R"({"prompt": "One day, a cat", "completion": " saw a bird.", "rationale": " Cats like birds."})",
      R"({"prompt": "Lily saw a big", "completion": " tree."})",
      R"({"prompt": "The little boy", "completion": " ran home."})",
  };
  for (size_t i = 0; i < lines.size(); ++i)
    train::parse_example(lines[i], static_cast<int64_t>(i + 1), "test", train::data_tokenizer(stories_tokenizer()),
                         {.max_seq = 256}, out);
  return out;
}

// The prompt ids of a prompt/completion example: up to its first CE row's target.
std::vector<int32_t> prompt_of(const train::Example& e) {
  size_t r = 0;
  while (!e.ce_mask[r]) ++r;
  return std::vector<int32_t>(e.tokens.begin(), e.tokens.begin() + static_cast<std::ptrdiff_t>(r + 1));
}

TEST(DistillOnPolicy, GreedySamplingIsTheArgmaxOfAFullForward) {
  const auto model = stories_model();
  train::FastModel student(*model, {.kernels = KernelChoice::fast, .n_threads = 2});
  const std::vector<train::Example> data = prompt_examples();
  std::vector<std::vector<int32_t>> prompts;
  for (const train::Example& e : data)
    if (!e.rationale) prompts.push_back(prompt_of(e));
  const std::vector<int32_t> eos = stories_tokenizer()->eos_ids();
  std::vector<bool> stopped;
  const auto answers = sample_answers(student, prompts, eos, 12, 256, 0.0, 1, 1, &stopped);
  ASSERT_EQ(answers.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_TRUE(stopped[i] || answers[i].size() == 12u) << i;
    for (size_t t = 0; t <= answers[i].size(); ++t) {
      if (t == answers[i].size() && !stopped[i]) break;
      std::vector<int32_t> seq = prompts[i];
      seq.insert(seq.end(), answers[i].begin(), answers[i].begin() + static_cast<std::ptrdiff_t>(t));
      const std::vector<float> row = last_rows(student, {seq})[0];
      const int32_t best = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      if (t < answers[i].size())
        EXPECT_EQ(answers[i][t], best) << "prompt " << i << " token " << t;
      else
        EXPECT_NE(std::find(eos.begin(), eos.end(), best), eos.end()) << "prompt " << i << " stopped without EOS";
    }
  }
  // A limit on the sequence stops the answer there.
  const auto short_answers = sample_answers(student, prompts, eos, 12, static_cast<int64_t>(prompts[0].size()) + 3, 0.0, 1, 1);
  EXPECT_LE(short_answers[0].size(), 3u);
}

TEST(DistillOnPolicy, SamplingFollowsTheSoftmax) {
  const auto model = stories_model();
  train::FastModel student(*model, {.kernels = KernelChoice::fast, .n_threads = 2});
  const std::vector<int32_t> prompt = prompt_of(prompt_examples()[0]);
  const size_t n = 4000;
  const std::vector<std::vector<int32_t>> prompts(n, prompt);  // each index its own generator
  const auto answers = sample_answers(student, prompts, {}, 1, 256, 1.0, 5, 3);
  std::map<int32_t, int> counts;
  for (const auto& a : answers) {
    ASSERT_EQ(a.size(), 1u);
    ++counts[a[0]];
  }
  const std::vector<float> row = last_rows(student, {prompt})[0];
  double mx = -INFINITY, sum = 0;
  for (float v : row) mx = std::max(mx, static_cast<double>(v));
  for (float v : row) sum += std::exp(v - mx);
  int checked = 0;
  for (size_t j = 0; j < row.size(); ++j) {
    const double p = std::exp(row[j] - mx) / sum;
    if (p < 0.02) continue;
    const double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(counts[static_cast<int32_t>(j)], n * p, 5 * sigma) << "token " << j << " p " << p;
    ++checked;
  }
  EXPECT_GE(checked, 2) << "the test needs tokens of some probability";
  // The same (seed, step) gives the same answers; another step others.
  EXPECT_EQ(sample_answers(student, prompts, {}, 1, 256, 1.0, 5, 3), answers);
  EXPECT_NE(sample_answers(student, prompts, {}, 1, 256, 1.0, 5, 4), answers);
}

TEST(DistillOnPolicy, GeneratorScoresEachAnswerAndGivesKdRows) {
  const auto model = stories_model();
  train::FastModel student(*model, {.kernels = KernelChoice::fast, .n_threads = 2});
  const StudentVocab vocab(stories_tokenizer());
  const Tokenizer& tok = *stories_tokenizer();
  const int32_t favourite = tok.encode(" the", false).back();
  FakeTeacher teacher(favourite, 60);
  const std::vector<train::Example> data = prompt_examples();
  std::vector<const train::Example*> batch;
  for (const train::Example& e : data)
    if (!e.rationale) batch.push_back(&e);
  std::vector<OnPolicyBatch> reports;
  OnPolicyOptions o{.lambda = 1, .teacher = {.url = teacher.url(), .timeout_seconds = 10, .retries = 0},
                    .top_k = 5, .max_tokens = 10, .temperature = 1.0, .seed = 9, .concurrency = 4};
  o.on_batch = [&](const OnPolicyBatch& b) { reports.push_back(b); };
  const train::OnPolicy on_policy = make_on_policy(o, student, vocab, {.max_seq = 256});
  EXPECT_EQ(on_policy.lambda, 1);
  const std::vector<train::Example> out = on_policy.generate(batch, 7);

  // What the student sampled, for the same (seed, step): the answers the teacher must have seen.
  std::vector<std::vector<int32_t>> prompts;
  for (const train::Example* e : batch) prompts.push_back(prompt_of(*e));
  const auto answers = sample_answers(student, prompts, tok.eos_ids(), 10, 256, 1.0, 9, 7);
  size_t non_empty = 0;
  for (const auto& a : answers) non_empty += !a.empty();
  ASSERT_GT(non_empty, 2u);
  EXPECT_EQ(teacher.requests.size(), non_empty);
  EXPECT_GE(teacher.most_in_flight(), 2) << "the requests should overlap";
  for (const json& r : teacher.requests) {
    EXPECT_EQ(r.at("echo"), true);
    EXPECT_EQ(r.at("max_tokens"), 0);
    EXPECT_EQ(r.at("logprobs"), 5);
  }
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].step, 7);
  EXPECT_EQ(reports[0].prompts, static_cast<int64_t>(batch.size()));
  EXPECT_EQ(reports[0].answers, static_cast<int64_t>(out.size()));

  // Each example: its prompt's text, then the sampled answer's text; KD rows on the answer's
  // tokens only, no CE rows; the teacher's two entries renormalized; the prompt's weight.
  ASSERT_EQ(out.size(), non_empty);
  size_t k = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (answers[i].empty()) continue;
    const train::Example& e = out[k++];
    EXPECT_EQ(e.weight, batch[i]->weight);
    EXPECT_EQ(e.line, batch[i]->line);
    std::vector<int32_t> whole = prompts[i];
    whole.insert(whole.end(), answers[i].begin(), answers[i].end());
    EXPECT_EQ(tok.decode(e.tokens), tok.decode(whole)) << "the example is not the prompt and the student's answer";
    int64_t kd_rows = 0;
    for (int64_t r = 0; r < e.size(); ++r) {
      EXPECT_EQ(e.ce_mask[r], 0) << r;
      if (!e.kd_mask[r]) continue;
      ++kd_rows;
      EXPECT_GE(r + 1, static_cast<int64_t>(prompts[i].size())) << "a KD row inside the prompt";
      const int32_t next = e.tokens[r + 1];
      double fav_p = -1;
      for (int64_t j = 0; j < e.teacher_k; ++j)
        if (e.teacher_ids[r * e.teacher_k + j] == favourite) fav_p = e.teacher_probs[r * e.teacher_k + j];
      EXPECT_NEAR(fav_p, next == favourite ? 1.0 : 0.9, 1e-6) << "row " << r;
    }
    EXPECT_EQ(kd_rows, e.size() - static_cast<int64_t>(tok.encode(tok.decode(std::span(prompts[i]).subspan(1)), true).size()));
  }
}

TEST(DistillOnPolicy, TrainingAtLambdaOneMovesTheStudentToTheTeacher) {
  const auto model = stories_model();
  train::FastModel student(*model, {.kernels = KernelChoice::fast, .n_threads = 2});
  const StudentVocab vocab(stories_tokenizer());
  const int32_t favourite = stories_tokenizer()->encode(" the", false).back();
  FakeTeacher teacher(favourite, 0);
  std::vector<train::Example> data = prompt_examples();
  for (train::Example& e : data) {  // a teacher in the data: --loss kd asks for one
    e.teacher_k = 1;
    e.kd_mask = e.ce_mask;
    e.teacher_ids.assign(e.tokens.size(), 0);
    e.teacher_probs.assign(e.tokens.size(), 0.0f);
    for (size_t i = 0; i < e.tokens.size(); ++i)
      if (e.kd_mask[i]) e.teacher_ids[i] = e.targets[i], e.teacher_probs[i] = 1;
  }
  std::vector<std::vector<int32_t>> prompts;
  for (const train::Example& e : data)
    if (!e.rationale) prompts.push_back(prompt_of(e));
  const auto mean_log_p = [&] {
    double total = 0;
    for (const auto& row : last_rows(student, prompts)) {
      double mx = -INFINITY, sum = 0;
      for (float v : row) mx = std::max(mx, static_cast<double>(v));
      for (float v : row) sum += std::exp(v - mx);
      total += row[favourite] - mx - std::log(sum);
    }
    return total / static_cast<double>(prompts.size());
  };
  const double before = mean_log_p();

  train::TrainConfig config;
  config.loss = train::LossKind::kd;
  config.temperature = 1;
  config.steps = 8;
  config.batch_tokens = 4096;
  config.lr = 3e-3;
  train::TrainableOf<train::FastModel> trainable(student);
  train::Trainer trainer(trainable, config, data, {});
  int64_t batches = 0;
  OnPolicyOptions o{.lambda = 1, .teacher = {.url = teacher.url(), .timeout_seconds = 10, .retries = 0},
                    .max_tokens = 8, .seed = 1};
  o.on_batch = [&](const OnPolicyBatch&) { ++batches; };
  trainer.set_on_policy(make_on_policy(o, student, vocab, {.max_seq = 256}));
  std::vector<train::StepReport> reports;
  trainer.run(0, [&](const train::StepReport& r) { reports.push_back(r); });
  const double after = mean_log_p();
  std::printf("  on-policy against the fake teacher: mean log p(favourite) after the prompts %.3f -> %.3f; "
              "step loss %.3f -> %.3f; %zu teacher requests\n",
              before, after, reports.front().loss, reports.back().loss, teacher.requests.size());
  EXPECT_EQ(batches, 8);
  for (const train::StepReport& r : reports) {
    EXPECT_TRUE(r.on_policy);
    EXPECT_FALSE(r.skipped) << r.skip_reason;
  }
  EXPECT_GE(teacher.requests.size(), 8u * 3);
  EXPECT_GT(after, before + std::log(4.0)) << "p(favourite) should at least quadruple";
  EXPECT_LT(reports.back().loss, reports.front().loss);
}

TEST(DistillOnPolicy, BadOptionsAreRefusedByName) {
  const auto model = stories_model();
  train::FastModel student(*model, {.kernels = KernelChoice::reference, .n_threads = 1});
  const StudentVocab vocab(stories_tokenizer());
  const auto refused = [&](OnPolicyOptions o, const std::string& name) {
    try {
      make_on_policy(o, student, vocab, {});
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  const OnPolicyOptions good{.lambda = 0.5, .teacher = {.url = "http://127.0.0.1:9"}};
  OnPolicyOptions o = good;
  o.lambda = 1.5;
  refused(o, "--on-policy");
  o = good;
  o.max_tokens = 0;
  refused(o, "--on-policy-max-tokens");
  o = good;
  o.temperature = -1;
  refused(o, "--on-policy-temperature");
  o = good;
  o.top_k = 21;
  refused(o, "top k");
  o = good;
  o.teacher.url = "ftp://nowhere";
  EXPECT_THROW(make_on_policy(o, student, vocab, {}), Error);
}

}  // namespace
}  // namespace orchard::distill
