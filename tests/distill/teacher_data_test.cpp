// A teacher's collected answers as the student's examples (distill/teacher_data.h): the JSONL read
// and refused by line, token texts mapped by bytes onto stories260K's vocabulary, the examples'
// tokens, masks and renormalized rows held against hand computation, and the pack's round trip
// (tokens and masks exact, probabilities within the quantizer's step, forward KL within 1e-3) with
// every truncation and corrupted byte refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_test_support.h"
#include "distill/teacher_data.h"
#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "tokenizer/api_token_text.h"
#include "train/loss.h"
#include "train/teacher_store.h"

namespace orchard::distill {
namespace {

std::shared_ptr<const Tokenizer> stories() {
  static auto tok = Tokenizer::load(test::source_path("models/stories260K/stories260K.gguf"));
  return tok;
}

const StudentVocab& stories_vocab() {
  static const StudentVocab vocab(stories());
  return vocab;
}

// Whether any stories260K token decodes to `bytes` (a plain scan, independent of StudentVocab).
bool some_token_spells(const std::string& bytes) {
  const auto tok = stories();
  for (int32_t id = 0; id < tok->vocab_size(); ++id)
    if (tok->token_bytes(id) == bytes) return true;
  return false;
}

bool byte_fallback(const std::string& text) { return text.size() == 6 && text.starts_with("<0x") && text[5] == '>'; }

std::string hex_form(const std::string& bytes) {
  std::string out = "bytes:";
  char buf[8];
  for (unsigned char c : bytes) {
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
  }
  return out;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "  (wanted: " << p << ")";
  }
}

TEST(DistillTeacherData, ReadsRecords) {
  test::TempDir dir;
  // One record a line; a blank line between them is skipped and counted.
  const std::string text =
      "{\"id\": 7, \"sample\": 1, \"prompt\": \"Hi\", \"completion\": \"A\\u00e9\", \"finish_reason\": \"stop\", "
      "\"teacher_tokens\": [\"A\", \"bytes:\\\\xc3\\\\xa9\"], \"teacher_logprobs\": [-0.25, null], "
      "\"teacher_top\": [{\"B\": -2.0, \"A\": -0.25, \"C\": -1.0}, {}]}\n"
      "\n"
      "{\"id\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"completion\": \"ok\", "
      "\"reasoning\": \"think\", \"teacher_tokens\": [\"ok\"], \"teacher_logprobs\": [-0.1], "
      "\"teacher_top\": [{\"ok\": -0.1}]}\n";
  const std::vector<TeacherRecord> r = read_records(dir.write("c.jsonl", text));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].id, 7);
  EXPECT_EQ(r[0].sample, 1);
  EXPECT_EQ(r[0].line, 1);
  EXPECT_EQ(r[0].prompt, "Hi");
  EXPECT_TRUE(r[0].messages.is_null());
  EXPECT_EQ(r[0].completion, "A\xc3\xa9");
  EXPECT_EQ(r[0].finish_reason, "stop");
  EXPECT_TRUE(r[0].reasoning.empty());
  ASSERT_EQ(r[0].tokens.size(), 2u);
  EXPECT_EQ(r[0].tokens[1], "bytes:\\xc3\\xa9");  // kept as collected
  EXPECT_EQ(api_token_bytes(r[0].tokens[1]), "\xc3\xa9");
  EXPECT_EQ(r[0].logprobs[0], -0.25);
  EXPECT_TRUE(std::isnan(r[0].logprobs[1]));
  ASSERT_EQ(r[0].top[0].size(), 3u);  // likeliest first
  EXPECT_EQ(r[0].top[0][0], (std::pair<std::string, double>("A", -0.25)));
  EXPECT_EQ(r[0].top[0][1], (std::pair<std::string, double>("C", -1.0)));
  EXPECT_EQ(r[0].top[0][2], (std::pair<std::string, double>("B", -2.0)));
  EXPECT_TRUE(r[0].top[1].empty());
  EXPECT_EQ(r[1].id, "x");
  EXPECT_EQ(r[1].line, 3);
  EXPECT_TRUE(r[1].prompt.empty());
  EXPECT_EQ(r[1].messages[0]["content"], "q");
  EXPECT_EQ(r[1].reasoning, "think");
  EXPECT_TRUE(r[1].finish_reason.empty());
  // The "bytes:" form only when it is all \xNN.
  EXPECT_EQ(api_token_bytes("bytes:\\x41\\x42"), "AB");
  EXPECT_EQ(api_token_bytes("bytes:\\x4"), "bytes:\\x4");
  EXPECT_EQ(api_token_bytes("bytes:abcd"), "bytes:abcd");
}

TEST(DistillTeacherData, RefusesMalformedLinesByLine) {
  const std::string good =
      "{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1], "
      "\"teacher_top\": [{\"a\": -1}]}\n";
  struct Case {
    std::string line;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"{\"id\": 1, \"prompt\": \"p\", \"teacher_tokens\": [], \"teacher_logprobs\": [], \"teacher_top\": []}",
       "completion"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1], "
       "\"teacher_top\": [[\"a\", -1]]}",
       "teacher_top"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1, "
       "-2], "
       "\"teacher_top\": [{\"a\": -1}]}",
       "teacher_logprobs"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1], "
       "\"teacher_top\": [{\"a\": NaN}]}",
       "malformed JSON"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1], "
       "\"teacher_top\": [{\"a\": \"NaN\"}]}",
       "must be a number"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [\"a\"], \"teacher_logprobs\": [-1], "
       "\"teacher_top\": [{\"a\": 1e999}]}",
       "malformed JSON"},
      {"{\"id\": 1, \"prompt\": \"p\", \"messages\": [], \"completion\": \"a\", \"teacher_tokens\": [], "
       "\"teacher_logprobs\": [], \"teacher_top\": []}",
       "exactly one"},
      {"[1, 2]", "JSON object"},
      {"{\"id\": 1, \"prompt\": \"p\", \"completion\": \"a\", \"teacher_tokens\": [5], \"teacher_logprobs\": [-1], "
       "\"teacher_top\": [{}]}",
       "teacher_tokens"},
  };
  for (const Case& c : cases) {
    test::TempDir dir;
    const std::string path = dir.write("bad.jsonl", good + "\n" + c.line + "\n" + good);
    expect_error([&] { read_records(path); }, {path + ":3", c.field});
  }
}

TEST(DistillTeacherData, StudentVocabMapsEveryTokenByItsBytes) {
  const auto tok = stories();
  const StudentVocab& vocab = stories_vocab();
  int ties = 0;
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    const std::string bytes = tok->token_bytes(id);
    if (bytes.empty()) continue;
    const std::optional<int32_t> got = vocab.id_of(bytes);
    ASSERT_TRUE(got.has_value()) << id;
    EXPECT_EQ(tok->token_bytes(*got), bytes) << id;
    EXPECT_EQ(vocab.id_of(hex_form(bytes)), got) << id;  // the legacy spelling maps the same
    // A byte-fallback piece that shares its bytes with a normal piece loses to it.
    if (byte_fallback(tok->token_text(id))) {
      for (int32_t other = 0; other < tok->vocab_size(); ++other) {
        if (tok->token_bytes(other) == bytes && !byte_fallback(tok->token_text(other)) && !tok->is_special(other)) {
          EXPECT_EQ(*got, other) << tok->token_text(id);
          ++ties;
          break;
        }
      }
    }
  }
  EXPECT_GT(ties, 0) << "stories260K should have a byte-fallback piece that a normal piece also spells (a space)";
  ASSERT_FALSE(some_token_spells("\xff\xfe"));
  EXPECT_FALSE(vocab.id_of("\xff\xfe").has_value());
  EXPECT_FALSE(vocab.id_of("").has_value());
  EXPECT_FALSE(vocab.id_of("zzzzzzzzzzzzqqqq").has_value());
}

// Three normal stories260K ids (unique bytes, not byte fallback) outside `avoid`.
std::vector<int32_t> other_ids(const std::vector<int32_t>& avoid, int count) {
  const auto tok = stories();
  std::vector<int32_t> out;
  for (int32_t id = 300; id < tok->vocab_size() && static_cast<int>(out.size()) < count; ++id) {
    if (std::find(avoid.begin(), avoid.end(), id) != avoid.end()) continue;
    const std::string bytes = tok->token_bytes(id);
    if (bytes.empty() || byte_fallback(tok->token_text(id)) || tok->is_special(id)) continue;
    int same = 0;
    for (int32_t o = 0; o < tok->vocab_size(); ++o) same += tok->token_bytes(o) == bytes;
    if (same == 1) out.push_back(id);
  }
  return out;
}

struct Built {
  TeacherRecord record;
  std::vector<int32_t> prompt, answer;
  int32_t a = 0, b = 0;  // the two alternatives in every row
};

// "Once upon a time" -> the teacher's tokens of "there was a big dog" (stories260K's own pieces),
// each row {chosen: -0.5, a: -1.5, b: -2.0, "bytes:"-spelled a: -3.0}; the last row only {chosen: -0.2, a: -0.9}.
Built build_record(int64_t line = 4) {
  const auto tok = stories();
  Built out;
  out.prompt = tok->encode("Once upon a time", true);
  out.answer = tok->encode("there was a big dog", false);
  const std::vector<int32_t> alt = other_ids(out.answer, 2);
  out.a = alt.at(0);
  out.b = alt.at(1);
  TeacherRecord& r = out.record;
  r.id = 1;
  r.line = line;
  r.prompt = "Once upon a time";
  r.finish_reason = "stop";
  for (size_t j = 0; j < out.answer.size(); ++j) {
    const std::string t = tok->token_bytes(out.answer[j]);
    r.tokens.push_back(t);
    r.completion += t;
    r.logprobs.push_back(-0.5);
    if (j + 1 < out.answer.size())
      r.top.push_back({{t, -0.5},
                       {tok->token_bytes(out.a), -1.5},
                       {tok->token_bytes(out.b), -2.0},
                       {hex_form(tok->token_bytes(out.a)), -3.0}});
    else
      r.top.push_back({{t, -0.2}, {tok->token_bytes(out.a), -0.9}});
  }
  return out;
}

// probability of `id` in row `row` of `e` (0 when absent)
double prob(const train::Example& e, int64_t row, int32_t id) {
  for (int64_t c = 0; c < e.teacher_k; ++c)
    if (e.teacher_ids[row * e.teacher_k + c] == id) return e.teacher_probs[row * e.teacher_k + c];
  return -1;
}

TEST(DistillTeacherData, ExactRecordBecomesTheTeachersTokensWithRenormalizedRows) {
  const auto tok = stories();
  const Built b = build_record();
  MappingStats stats;
  const std::vector<train::Example> ex = to_examples(std::span(&b.record, 1), stories_vocab(), {}, &stats, "c.jsonl");
  ASSERT_EQ(ex.size(), 1u);
  const train::Example& e = ex[0];
  std::vector<int32_t> want = b.prompt;
  want.insert(want.end(), b.answer.begin(), b.answer.end());
  want.push_back(tok->eos_ids().at(0));
  EXPECT_EQ(e.tokens, want);
  EXPECT_EQ(e.line, 4);
  EXPECT_FALSE(e.rationale);
  ASSERT_EQ(e.teacher_k, 3);  // chosen, a (its two spellings merged), b
  const int64_t P = static_cast<int64_t>(b.prompt.size()), n = static_cast<int64_t>(b.answer.size());
  for (int64_t i = 0; i < e.size(); ++i) {
    EXPECT_EQ(e.ce_mask[i], i >= P - 1 && i < P + n) << i;      // answer tokens and EOS
    EXPECT_EQ(e.kd_mask[i], i >= P - 1 && i < P + n - 1) << i;  // answer tokens only
    if (i + 1 < e.size()) {
      EXPECT_EQ(e.targets[i], e.tokens[i + 1]);
    }
  }
  // Hand computation: e^-0.5, e^-1.5 + e^-3.0, e^-2.0 over their sum.
  const double z = std::exp(-0.5) + std::exp(-1.5) + std::exp(-3.0) + std::exp(-2.0);
  for (int64_t j = 0; j + 1 < n; ++j) {
    const int64_t row = P - 1 + j;
    EXPECT_NEAR(prob(e, row, b.answer[j]), std::exp(-0.5) / z, 1e-6);
    EXPECT_NEAR(prob(e, row, b.a), (std::exp(-1.5) + std::exp(-3.0)) / z, 1e-6);
    EXPECT_NEAR(prob(e, row, b.b), std::exp(-2.0) / z, 1e-6);
  }
  // The last row: two entries, padded with a third distinct id at probability 0.
  const int64_t last = P - 1 + n - 1;
  const double z2 = std::exp(-0.2) + std::exp(-0.9);
  EXPECT_NEAR(prob(e, last, b.answer[n - 1]), std::exp(-0.2) / z2, 1e-6);
  EXPECT_NEAR(prob(e, last, b.a), std::exp(-0.9) / z2, 1e-6);
  std::set<int32_t> ids(e.teacher_ids.begin() + last * 3, e.teacher_ids.begin() + last * 3 + 3);
  EXPECT_EQ(ids.size(), 3u);
  double sum = 0;
  for (int c = 0; c < 3; ++c) sum += e.teacher_probs[last * 3 + c];
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_EQ(stats.records, 1);
  EXPECT_EQ(stats.exact, 1);
  EXPECT_EQ(stats.partial + stats.sft_only, 0);
  EXPECT_EQ(stats.answer_tokens, n);
  EXPECT_EQ(stats.kd_rows, n);
  EXPECT_EQ(stats.dropped_entries, 0);
  // The loss accepts the rows as they are (distinct ids, sums of 1).
  std::vector<float> logits(static_cast<size_t>(e.size() * tok->vocab_size()), 0.0f);
  EXPECT_NO_THROW(
      train::distill_loss(logits, e.size(), tok->vocab_size(), e.teacher(), {.temperature = 1}, e.kd_mask, {}));

  // Without "stop" no EOS: the answer alone.
  Built c = build_record();
  c.record.finish_reason = "length";
  const train::Example f = to_examples(std::span(&c.record, 1), stories_vocab(), {}).at(0);
  EXPECT_EQ(f.size(), P + n);
  EXPECT_EQ(f.ce_mask[P + n - 2], 1);
}

TEST(DistillTeacherData, PartialRecordDropsUnknownEntriesAndRenormalizes) {
  Built b = build_record();
  ASSERT_FALSE(some_token_spells("\xff\xfe"));
  b.record.top[0].insert(b.record.top[0].begin() + 1, {"\xff\xfe", -1.0});
  MappingStats stats;
  const train::Example e = to_examples(std::span(&b.record, 1), stories_vocab(), {}, &stats, "c.jsonl").at(0);
  EXPECT_EQ(stats.partial, 1);
  EXPECT_EQ(stats.exact, 0);
  EXPECT_EQ(stats.dropped_entries, 1);
  EXPECT_NEAR(stats.dropped_mass, std::exp(-1.0), 1e-12);
  const int64_t row = static_cast<int64_t>(b.prompt.size()) - 1;
  const double z = std::exp(-0.5) + std::exp(-1.5) + std::exp(-3.0) + std::exp(-2.0);  // -1.0 is not in it
  EXPECT_NEAR(prob(e, row, b.answer[0]), std::exp(-0.5) / z, 1e-6);
  EXPECT_NEAR(prob(e, row, b.b), std::exp(-2.0) / z, 1e-6);
}

TEST(DistillTeacherData, UnmappedTokenMakesTheRecordSftOnly) {
  const auto tok = stories();
  TeacherRecord r;
  r.id = 2;
  r.line = 9;
  r.prompt = "Once upon a time";
  r.completion =
      "ab\xff\xfe"
      "cd";
  r.tokens = {"ab", "\xff\xfe", "cd"};
  r.logprobs = {-1, -1, -1};
  r.top = {{{"ab", -1}}, {{"\xff\xfe", -1}}, {{"cd", -1}}};
  r.finish_reason = "length";
  MappingStats stats;
  const train::Example e = to_examples(std::span(&r, 1), stories_vocab(), {}, &stats, "c.jsonl").at(0);
  std::vector<int32_t> want = tok->encode("Once upon a time", true);
  const std::vector<int32_t> answer = tok->encode(r.completion, false);
  want.insert(want.end(), answer.begin(), answer.end());
  EXPECT_EQ(e.tokens, want);
  EXPECT_EQ(e.teacher_k, 0);
  for (uint8_t m : e.kd_mask) EXPECT_EQ(m, 0);
  EXPECT_EQ(stats.sft_only, 1);
  EXPECT_EQ(stats.kd_rows, 0);
  EXPECT_EQ(stats.answer_tokens, static_cast<int64_t>(answer.size()));
  EXPECT_NE(stats.first_unmapped.find("c.jsonl:9"), std::string::npos) << stats.first_unmapped;

  // Tokens that do not spell the completion are sft_only too (a chat API's U+FFFD for a split character).
  Built b = build_record();
  b.record.completion += "!";
  MappingStats s2;
  to_examples(std::span(&b.record, 1), stories_vocab(), {}, &s2);
  EXPECT_EQ(s2.sft_only, 1);
}

// A teacher that samples the first two bytes of a 4-byte character and then an ASCII token: its
// text has one U+FFFD there (Unicode's maximal subpart, as Python's errors="replace" gives), its
// tokens the bytes. The tokens are what it said, so the record still maps token for token.
TEST(DistillTeacherData, SplitCharacterWithAReplacementInTheTextStillMaps) {
  const auto tok = stories();
  Built b = build_record();
  TeacherRecord& r = b.record;
  const std::optional<int32_t> f0 = tok->token_id("<0xF0>"), x9d = tok->token_id("<0x9D>");
  ASSERT_TRUE(f0 && x9d);
  r.tokens.insert(r.tokens.begin() + 1, {"bytes:\\xf0", "bytes:\\x9d"});
  r.logprobs.insert(r.logprobs.begin() + 1, {-4.0, -4.0});
  r.top.insert(r.top.begin() + 1, {{{"bytes:\\xf0", -4.0}}, {{"bytes:\\x9d", -4.0}}});
  r.completion = tok->token_bytes(b.answer[0]) + "\xEF\xBF\xBD";
  for (size_t j = 1; j < b.answer.size(); ++j) r.completion += tok->token_bytes(b.answer[j]);
  MappingStats stats;
  const train::Example e = to_examples(std::span(&r, 1), stories_vocab(), {}, &stats).at(0);
  EXPECT_EQ(stats.exact, 1);
  std::vector<int32_t> want = b.prompt;
  want.push_back(b.answer[0]);
  want.push_back(*f0);
  want.push_back(*x9d);
  want.insert(want.end(), b.answer.begin() + 1, b.answer.end());
  want.push_back(tok->eos_ids().front());
  EXPECT_EQ(e.tokens, want);
  // Two replacement characters where the bytes make one are another text: not these tokens.
  r.completion.insert(tok->token_bytes(b.answer[0]).size(), "\xEF\xBF\xBD");
  MappingStats other;
  to_examples(std::span(&r, 1), stories_vocab(), {}, &other);
  EXPECT_EQ(other.sft_only, 1);
}

TEST(DistillTeacherData, ReasoningBecomesARationaleSequence) {
  const auto tok = stories();
  Built b = build_record();
  // The teacher's tokens spell its thinking block first, as collect keeps them.
  TeacherRecord& r = b.record;
  r.reasoning = "she was happy";
  const std::vector<std::string> think = {"<think>", "she was happy", "</think>", "\n\n"};
  r.tokens.insert(r.tokens.begin(), think.begin(), think.end());
  r.logprobs.insert(r.logprobs.begin(), think.size(), -0.1);
  r.top.insert(r.top.begin(), think.size(), std::vector<std::pair<std::string, double>>{{"zzqq\xff", -0.1}});
  MappingStats stats;
  const std::vector<train::Example> ex = to_examples(std::span(&r, 1), stories_vocab(), {}, &stats);
  ASSERT_EQ(ex.size(), 2u);
  std::vector<int32_t> main = b.prompt;
  main.insert(main.end(), b.answer.begin(), b.answer.end());
  main.push_back(tok->eos_ids().at(0));
  EXPECT_EQ(ex[0].tokens, main);
  EXPECT_EQ(stats.exact, 1);  // the thinking block's rows are not the answer's
  EXPECT_EQ(ex[0].teacher_k, 3);
  std::vector<int32_t> rationale = b.prompt;
  const std::vector<int32_t> reasoning = tok->encode("she was happy", false);
  rationale.insert(rationale.end(), reasoning.begin(), reasoning.end());
  rationale.push_back(tok->eos_ids().at(0));
  EXPECT_TRUE(ex[1].rationale);
  EXPECT_EQ(ex[1].tokens, rationale);
  EXPECT_EQ(ex[1].teacher_k, 0);
  const int64_t P = static_cast<int64_t>(b.prompt.size());
  for (int64_t i = 0; i < ex[1].size(); ++i) EXPECT_EQ(ex[1].ce_mask[i], i >= P - 1 && i + 1 < ex[1].size()) << i;
  EXPECT_EQ(stats.rationale_examples, 1);
  EXPECT_EQ(to_examples(std::span(&r, 1), stories_vocab(), {.reasoning = false}).size(), 1u);
}

TEST(DistillTeacherData, MaxSeqRefusesOrTruncates) {
  const Built b = build_record(11);
  const int64_t P = static_cast<int64_t>(b.prompt.size());
  expect_error([&] { to_examples(std::span(&b.record, 1), stories_vocab(), {.max_seq = P + 2}, nullptr, "c.jsonl"); },
               {"c.jsonl:11", "longer than the limit of " + std::to_string(P + 2)});
  const train::Example e =
      to_examples(std::span(&b.record, 1), stories_vocab(), {.max_seq = P + 2, .truncate = true}).at(0);
  EXPECT_EQ(e.size(), P + 2);
  EXPECT_EQ(e.ce_mask[P - 1], 1);
  EXPECT_EQ(e.ce_mask[P], 1);
  EXPECT_EQ(e.ce_mask[P + 1], 0);
  EXPECT_EQ(e.kd_mask[P + 1], 0);
  expect_error(
      [&] {
        to_examples(std::span(&b.record, 1), stories_vocab(), {.max_seq = P, .truncate = true}, nullptr, "c.jsonl");
      },
      {"c.jsonl:11", "nothing left"});
  // A chat record for a student without a chat template.
  TeacherRecord chat = b.record;
  chat.prompt.clear();
  chat.messages = nlohmann::json::parse(R"([{"role": "user", "content": "hi"}])");
  expect_error([&] { to_examples(std::span(&chat, 1), stories_vocab(), {}, nullptr, "c.jsonl"); },
               {"c.jsonl:11", "chat template"});
}

TEST(DistillTeacherData, ChatRecordIsRenderedWithTheStudentsTemplate) {
  const auto tok = Tokenizer::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  ASSERT_FALSE(tok->chat_template().empty());
  const StudentVocab vocab(tok);
  const nlohmann::json messages = nlohmann::json::parse(R"([{"role": "user", "content": "Say hello."}])");
  const std::vector<int32_t> answer = tok->encode("Hello there, friend.", false);
  TeacherRecord r;
  r.id = "c";
  r.line = 2;
  r.messages = messages;
  r.finish_reason = "stop";
  for (int32_t id : answer) {
    r.tokens.push_back(tok->token_bytes(id));
    r.completion += tok->token_bytes(id);
    r.logprobs.push_back(-0.1);
    r.top.push_back({{tok->token_bytes(id), -0.1}});
  }
  const train::Example e = to_examples(std::span(&r, 1), vocab, {}).at(0);
  const ChatTemplate tmpl(tok->chat_template());
  std::vector<int32_t> want = tok->encode(tmpl.render_chat(messages.dump(), "", true), false);
  const int64_t P = static_cast<int64_t>(want.size());
  want.insert(want.end(), answer.begin(), answer.end());
  want.push_back(tok->eos_ids().at(0));
  EXPECT_EQ(e.tokens, want);
  EXPECT_EQ(e.teacher_k, 1);
  EXPECT_EQ(e.kd_mask[P - 1], 1);
  EXPECT_EQ(e.teacher_probs[(P - 1) * 1], 1.0f);
}

// A confident teacher: each row's chosen token at ~1, ten others at e^-18.42 = 1e-8 of it, far below
// the quantizer's floor (2 Q ln 2 nats: 16.6 at Q = 12, 13.9 at Q = 10).
TeacherRecord peaked_record(int64_t line = 5) {
  const auto tok = stories();
  const std::vector<int32_t> answer = tok->encode("the dog ran", false);
  const std::vector<int32_t> others = other_ids(answer, 10);
  TeacherRecord r;
  r.id = 5;
  r.line = line;
  r.prompt = "One day";
  r.finish_reason = "stop";
  for (int32_t id : answer) {
    r.tokens.push_back(tok->token_bytes(id));
    r.completion += tok->token_bytes(id);
    r.logprobs.push_back(0);
    std::vector<std::pair<std::string, double>> row = {{tok->token_bytes(id), 0.0}};
    for (int32_t o : others) row.emplace_back(tok->token_bytes(o), std::log(1e-8));
    r.top.push_back(row);
  }
  return r;
}

// Examples of every kind: exact with a padded row, partial, sft_only, a rationale.
std::vector<train::Example> mixed_examples() {
  std::vector<TeacherRecord> records;
  Built a = build_record(1);
  a.record.reasoning = "she was happy";
  records.push_back(a.record);
  Built p = build_record(2);
  p.record.top[1].insert(p.record.top[1].begin(), {"\xff\xfe", -0.1});
  p.record.top[2] = {{p.record.tokens[2], -0.01},
                     {stories()->token_bytes(p.a), -900.0}};  // a probability that underflows
  records.push_back(p.record);
  TeacherRecord s;
  s.id = 3;
  s.line = 3;
  s.prompt = "The cat";
  s.completion =
      "ab\xff\xfe"
      "cd";
  s.tokens = {"ab", "\xff\xfe", "cd"};
  s.logprobs = {-1, -1, -1};
  s.top = {{{"ab", -1}}, {{"\xff\xfe", -1}}, {{"cd", -1}}};
  records.push_back(s);
  records.push_back(peaked_record());
  return to_examples(records, stories_vocab(), {});
}

double fkl(const train::Example& e, const std::vector<float>& logits, int64_t V) {
  return train::distill_loss(logits, e.size(), V, e.teacher(), {.temperature = 1}, e.kd_mask, {});
}

TEST(DistillTeacherData, PackRoundTrip) {
  const int64_t V = stories()->vocab_size();
  const std::vector<train::Example> ex = mixed_examples();
  ASSERT_EQ(ex.size(), 5u);
  test::TempDir dir;
  PackStats stats;
  const std::string path = dir.file("t.otk");
  write_pack(path, ex, V, &stats);
  EXPECT_TRUE(is_teacher_pack(path));
  EXPECT_EQ(stats.bytes, static_cast<int64_t>(test::read_bytes(path).size()));
  EXPECT_EQ(stats.examples, 5);
  EXPECT_GT(stats.teacher_bytes, 0);
  EXPECT_LT(stats.teacher_bytes, stats.bytes);
  const std::vector<train::Example> back = read_pack(path, V);
  ASSERT_EQ(back.size(), ex.size());
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  int64_t kd_rows = 0, tokens = 0;
  for (size_t n = 0; n < ex.size(); ++n) {
    const train::Example &a = ex[n], &b = back[n];
    EXPECT_EQ(b.tokens, a.tokens);
    EXPECT_EQ(b.targets, a.targets);
    EXPECT_EQ(b.ce_mask, a.ce_mask);
    EXPECT_EQ(b.kd_mask, a.kd_mask);
    EXPECT_EQ(b.teacher_k, a.teacher_k);
    EXPECT_EQ(b.rationale, a.rationale);
    EXPECT_EQ(b.line, a.line);
    EXPECT_EQ(b.weight, a.weight);
    tokens += a.size();
    if (!a.has_teacher()) continue;
    const int64_t k = a.teacher_k;
    for (int64_t i = 0; i < a.size(); ++i) {
      if (!a.kd_mask[i]) continue;
      ++kd_rows;
      std::map<int32_t, float> pa, pb;
      for (int64_t c = 0; c < k; ++c) {
        pa[a.teacher_ids[i * k + c]] = a.teacher_probs[i * k + c];
        pb[b.teacher_ids[i * k + c]] = b.teacher_probs[i * k + c];
      }
      ASSERT_EQ(pa.size(), pb.size());
      for (const auto& [id, p] : pa) {
        ASSERT_TRUE(pb.count(id)) << id;
        if (p == 0) {
          EXPECT_EQ(pb[id], 0.0f);  // padding and underflow stay exactly 0
        } else {
          // Q = 9: at most 0.2% of the row's largest near the top, coarser far below it.
          EXPECT_NEAR(pb[id], p, 2e-3 + 5e-3 * p) << "example " << n << " row " << i << " id " << id;
        }
      }
    }
    std::vector<float> logits(static_cast<size_t>(a.size() * V));
    for (float& z : logits) z = normal(rng);
    const double la = fkl(a, logits, V), lb = fkl(b, logits, V);
    EXPECT_LE(std::fabs(la - lb), 1e-3 * std::fabs(la)) << n << ": " << la << " vs " << lb;
    std::vector<float> zeros(logits.size(), 0.0f);
    EXPECT_LE(std::fabs(fkl(a, zeros, V) - fkl(b, zeros, V)), 1e-3 * fkl(a, zeros, V)) << n;
  }
  EXPECT_EQ(stats.kd_rows, kd_rows);
  EXPECT_EQ(stats.tokens, tokens);
  // load_teacher_examples tells the pack from JSONL.
  EXPECT_EQ(load_teacher_examples(path, stories_vocab(), {}).size(), 5u);
  EXPECT_EQ(load_teacher_examples(path, stories_vocab(), {.reasoning = false}).size(), 4u);
  expect_error([&] { read_pack(path, V + 1); }, {path, "vocabulary"});
}

// Entries below the quantizer's floor come back at their depth (the floor byte), not at the floor,
// at every Q that puts them there: each of the ten tail entries is 1e-8 / (1 + 1e-7) after renormalization.
TEST(DistillTeacherData, PackKeepsTheTailBelowTheQuantizersFloor) {
  const int64_t V = stories()->vocab_size();
  const TeacherRecord r = peaked_record();
  const std::vector<train::Example> ex = to_examples(std::span(&r, 1), stories_vocab(), {});
  test::TempDir dir;
  for (int q : {9, 10, 12}) {
    write_pack(dir.file("p.otk"), ex, V, nullptr, q);
    const train::Example e = read_pack(dir.file("p.otk"), V).at(0);
    int tail = 0, rows = 0;
    for (int64_t i = 0; i < e.size(); ++i) {
      if (!e.kd_mask[i]) continue;
      ++rows;
      for (int64_t c = 0; c < e.teacher_k; ++c) {
        const float p = e.teacher_probs[i * e.teacher_k + c];
        if (p > 0.5f) continue;
        ++tail;
        EXPECT_NEAR(p, 1e-8, 0.04e-8) << "Q = " << q;  // the byte's step is 1/16 nat: 3% at most
      }
    }
    EXPECT_EQ(tail, 10 * rows) << q;
    EXPECT_GE(rows, 2);
  }
}

TEST(DistillTeacherData, PackRefusesEveryTruncationAndCorruption) {
  const int64_t V = stories()->vocab_size();
  test::TempDir dir;
  const std::string path = dir.file("t.otk");
  write_pack(path, mixed_examples(), V);
  const std::vector<uint8_t> good = test::read_bytes(path);
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string cut = dir.write("cut.otk", std::vector<uint8_t>(good.begin(), good.begin() + n));
    EXPECT_THROW(read_pack(cut, V), Error) << n;
  }
  for (size_t at = 0; at < good.size(); at += 3) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x5a;
    EXPECT_THROW(read_pack(dir.write("flip.otk", bad), V), Error) << at;
  }
  // Corruptions the checksum does not catch (the CRC recomputed): each refused or read, never a crash.
  int refused = 0;
  for (size_t at = 5; at + 4 < good.size(); ++at) {
    for (uint8_t value : {uint8_t{0x00}, uint8_t{0xff}, uint8_t{0x80}}) {
      std::vector<uint8_t> bad = good;
      if (bad[at] == value) continue;
      bad[at] = value;
      const uint32_t crc = train::crc32_ieee(std::span(bad).first(bad.size() - 4));
      for (int i = 0; i < 4; ++i) bad[bad.size() - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
      try {
        read_pack(dir.write("forged.otk", bad), V);
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0);
  std::vector<uint8_t> trailing = good;
  trailing.insert(trailing.end() - 4, uint8_t{0});
  const uint32_t crc = train::crc32_ieee(std::span(trailing).first(trailing.size() - 4));
  for (int i = 0; i < 4; ++i) trailing[trailing.size() - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
  expect_error([&] { read_pack(dir.write("trail.otk", trailing), V); }, {"after the last example"});
}

nlohmann::json record_json(const TeacherRecord& r) {
  nlohmann::json j = {{"id", r.id},
                      {"sample", r.sample},
                      {"prompt", r.prompt},
                      {"completion", r.completion},
                      {"finish_reason", r.finish_reason},
                      {"teacher_tokens", r.tokens}};
  nlohmann::json lps = nlohmann::json::array(), top = nlohmann::json::array();
  for (double lp : r.logprobs) lps.push_back(lp);
  for (const auto& row : r.top) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& [text, lp] : row) o[text] = lp;
    top.push_back(o);
  }
  j["teacher_logprobs"] = lps;
  j["teacher_top"] = top;
  return j;
}

TEST(DistillTeacherData, CliPacksAndChecksTheLoss) {
  test::TempDir dir;
  Built a = build_record(1), b = build_record(2);
  ASSERT_FALSE(some_token_spells("zzqqxxyy"));
  b.record.top[0].push_back({"zzqqxxyy", -4.0});
  const std::string data =
      dir.write("c.jsonl", record_json(a.record).dump() + "\n" + record_json(b.record).dump() + "\n");
  const std::string model = test::source_path("models/stories260K/stories260K.gguf");
  const test::CliResult r =
      test::run_cli({"distill", "pack", "--data", data, "--student", model, "--out", dir.file("p.otk")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("records: 2 (exact 1, partial 1, sft_only 0)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("within 1e-3"), std::string::npos) << r.out;
  const std::vector<train::Example> want = to_examples(read_records(data), stories_vocab(), {});
  const std::vector<train::Example> got = read_pack(dir.file("p.otk"), stories()->vocab_size());
  ASSERT_EQ(got.size(), want.size());
  for (size_t n = 0; n < got.size(); ++n) {
    EXPECT_EQ(got[n].tokens, want[n].tokens);
    EXPECT_EQ(got[n].kd_mask, want[n].kd_mask);
  }
  const std::string bad = dir.write("bad.jsonl", record_json(a.record).dump() + "\n{\"id\": 1}\n");
  test::expect_one_line_error(
      test::run_cli({"distill", "pack", "--data", bad, "--student", model, "--out", dir.file("q.otk")}), bad + ":2");
}

}  // namespace
}  // namespace orchard::distill
