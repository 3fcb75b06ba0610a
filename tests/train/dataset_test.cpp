// The trainer's JSONL data (train/dataset.h): every line format's tokens, targets, masks and teacher
// rows held against tokenizations computed here with the model's own tokenizer, and every refusal
// naming the file and line.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "train/dataset.h"

namespace orchard::train {
namespace {

std::shared_ptr<const Tokenizer> stories() {
  static auto tok = Tokenizer::load(test::source_path("models/stories260K/stories260K.gguf"));
  return tok;
}
std::shared_ptr<const Tokenizer> chat() {
  static auto tok = Tokenizer::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  return tok;
}

std::vector<Example> load_lines(const std::string& text, const DataTokenizer& tok, int64_t max_seq = 256,
                                bool truncate = false) {
  test::TempDir dir;
  return load_dataset(dir.write("data.jsonl", text), tok, {.max_seq = max_seq, .truncate = truncate});
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Targets are the next token; the last row's never counts.
void expect_targets(const Example& e) {
  ASSERT_EQ(e.targets.size(), e.tokens.size());
  for (size_t i = 0; i + 1 < e.tokens.size(); ++i) EXPECT_EQ(e.targets[i], e.tokens[i + 1]) << i;
  EXPECT_EQ(e.ce_mask.back(), 0);
}

TEST(TrainDataset, TextTrainsEveryTokenAfterBos) {
  const auto tok = stories();
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const std::vector<Example> ex = load_lines("{\"text\": \"" + text + "\"}\n", data_tokenizer(tok));
  ASSERT_EQ(ex.size(), 1u);
  const std::vector<int32_t> ids = tok->encode(text, true);
  ASSERT_TRUE(tok->adds_bos());
  EXPECT_EQ(ex[0].tokens, ids);
  EXPECT_EQ(ex[0].tokens.front(), *tok->bos_id());
  expect_targets(ex[0]);
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(ex[0].ce_mask[i], 1) << i;
  for (uint8_t m : ex[0].kd_mask) EXPECT_EQ(m, 0);
  EXPECT_FALSE(ex[0].has_teacher());
  EXPECT_EQ(ex[0].line, 1);
  EXPECT_EQ(ex[0].weight, 1.0);
}

TEST(TrainDataset, PromptCompletionMasksThePromptAndEndsWithEos) {
  const auto tok = stories();
  const std::string prompt = "Lily saw a big dog.", completion = " She was happy.";
  const std::vector<Example> ex = load_lines(
      "\n{\"prompt\": \"" + prompt + "\", \"completion\": \"" + completion + "\", \"weight\": 2.5}\n", data_tokenizer(tok));
  ASSERT_EQ(ex.size(), 1u);
  const std::vector<int32_t> p = tok->encode(prompt, true), c = tok->encode(completion, false);
  const int32_t eos = tok->eos_ids().front();
  EXPECT_EQ(ex[0].tokens, concat(concat(p, c), {eos}));
  expect_targets(ex[0]);
  // Rows p-1 .. T-2 predict the completion and its EOS; nothing else counts.
  for (size_t i = 0; i < ex[0].tokens.size(); ++i)
    EXPECT_EQ(ex[0].ce_mask[i], i + 1 >= p.size() && i + 1 < ex[0].tokens.size() ? 1 : 0) << i;
  EXPECT_EQ(ex[0].line, 2);  // the blank line is skipped but counted
  EXPECT_EQ(ex[0].weight, 2.5);
}

TEST(TrainDataset, TeacherRowsSitOnTheRowsThatPredictTheCompletion) {
  const auto tok = stories();
  const std::string prompt = "Lily saw", completion = " a dog";
  const std::vector<int32_t> p = tok->encode(prompt, true), c = tok->encode(completion, false);
  const size_t n = c.size() + 1;  // with the EOS
  nlohmann::json ids = nlohmann::json::array(), lps = nlohmann::json::array();
  for (size_t r = 0; r < n; ++r) {
    ids.push_back({static_cast<int>(10 + r), static_cast<int>(100 + r), 7});
    lps.push_back({-0.5, -1.5 - 0.1 * static_cast<double>(r), -3.0});
  }
  nlohmann::json line = {{"prompt", prompt}, {"completion", completion}, {"teacher", {{"ids", ids}, {"logprobs", lps}}}};
  std::vector<Example> ex = load_lines(line.dump() + "\n", data_tokenizer(tok));
  ASSERT_EQ(ex.size(), 1u);
  const Example& e = ex[0];
  ASSERT_EQ(e.teacher_k, 3);
  ASSERT_EQ(e.teacher_ids.size(), e.tokens.size() * 3);
  for (size_t i = 0; i < e.tokens.size(); ++i) {
    const bool on = i + 1 >= p.size() && i + 1 < e.tokens.size();
    EXPECT_EQ(e.kd_mask[i], on ? 1 : 0) << i;
    if (!on) continue;
    const size_t r = i + 1 - p.size();
    const double a = std::exp(-0.5), b = std::exp(-1.5 - 0.1 * static_cast<double>(r)), d = std::exp(-3.0);
    EXPECT_EQ(e.teacher_ids[i * 3 + 0], static_cast<int>(10 + r));
    EXPECT_EQ(e.teacher_ids[i * 3 + 1], static_cast<int>(100 + r));
    EXPECT_EQ(e.teacher_ids[i * 3 + 2], 7);
    EXPECT_NEAR(e.teacher_probs[i * 3 + 0], a / (a + b + d), 1e-7);
    EXPECT_NEAR(e.teacher_probs[i * 3 + 1], b / (a + b + d), 1e-7);
    EXPECT_NEAR(e.teacher_probs[i * 3 + 2], d / (a + b + d), 1e-7);
  }
  // One row fewer: the teacher stops before the EOS, whose row then has CE only.
  ids.erase(ids.end() - 1), lps.erase(lps.end() - 1);
  line["teacher"] = {{"ids", ids}, {"logprobs", lps}};
  ex = load_lines(line.dump() + "\n", data_tokenizer(tok));
  const size_t last = ex[0].tokens.size() - 2;
  EXPECT_EQ(ex[0].ce_mask[last], 1);
  EXPECT_EQ(ex[0].kd_mask[last], 0);
  EXPECT_EQ(ex[0].kd_mask[last - 1], 1);
}

TEST(TrainDataset, RationaleIsASecondSequenceFromThePrompt) {
  const auto tok = stories();
  const std::vector<Example> ex =
      load_lines("{\"prompt\": \"Q\", \"completion\": \" yes\", \"rationale\": \" because the sun\"}\n", data_tokenizer(tok));
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_FALSE(ex[0].rationale);
  EXPECT_TRUE(ex[1].rationale);
  const std::vector<int32_t> p = tok->encode("Q", true), r = tok->encode(" because the sun", false);
  EXPECT_EQ(ex[1].tokens, concat(concat(p, r), {tok->eos_ids().front()}));
  expect_targets(ex[1]);
  for (size_t i = 0; i < ex[1].tokens.size(); ++i)
    EXPECT_EQ(ex[1].ce_mask[i], i + 1 >= p.size() && i + 1 < ex[1].tokens.size() ? 1 : 0);
  EXPECT_EQ(ex[1].line, 1);
}

// The trained tokens of an example, one list per run of masked rows.
std::vector<std::vector<int32_t>> trained_spans(const Example& e) {
  std::vector<std::vector<int32_t>> spans;
  for (size_t i = 0; i + 1 < e.tokens.size(); ++i) {
    if (!e.ce_mask[i]) continue;
    if (i == 0 || !e.ce_mask[i - 1]) spans.emplace_back();
    spans.back().push_back(e.tokens[i + 1]);
  }
  return spans;
}

TEST(TrainDataset, MessagesTrainTheAssistantTurnsOnly) {
  // A ChatML template without a thinking block: every turn renders the same in any longer conversation.
  const auto tok = chat();
  const std::string source =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  DataTokenizer data = data_tokenizer(tok);
  const auto tmpl = std::make_shared<ChatTemplate>(source);
  data.render_chat = [tmpl](const std::string& m, bool gen) { return tmpl->render_chat(m, "", gen); };
  const nlohmann::json messages = {{{"role", "system"}, {"content", "Be brief."}},
                                   {{"role", "user"}, {"content", "Hi"}},
                                   {{"role", "assistant"}, {"content", "Hello there"}},
                                   {{"role", "user"}, {"content", "Name a color"}},
                                   {{"role", "assistant"}, {"content", "Blue"}}};
  const std::vector<Example> ex = load_lines(nlohmann::json{{"messages", messages}}.dump() + "\n", data);
  ASSERT_EQ(ex.size(), 1u);
  const Example& e = ex[0];
  const std::string rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                               "<|im_start|>assistant\nHello there<|im_end|>\n<|im_start|>user\nName a color<|im_end|>\n"
                               "<|im_start|>assistant\nBlue<|im_end|>\n";
  EXPECT_EQ(e.tokens, tok->encode(rendered, false));
  expect_targets(e);
  // The trained tokens, read back as text: each assistant message and its turn's end, nothing else.
  const auto spans = trained_spans(e);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(tok->decode(spans[0]), "Hello there<|im_end|>\n");
  EXPECT_EQ(tok->decode(spans[1]), "Blue<|im_end|>\n");
  EXPECT_EQ(spans[0], tok->encode("Hello there<|im_end|>\n", false));
}

TEST(TrainDataset, MessagesWithATeacherAndARationale) {
  const auto tok = chat();
  const std::string source =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  DataTokenizer data = data_tokenizer(tok);
  const auto tmpl = std::make_shared<ChatTemplate>(source);
  data.render_chat = [tmpl](const std::string& m, bool gen) { return tmpl->render_chat(m, "", gen); };
  const nlohmann::json messages = {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Blue"}}};
  const std::vector<int32_t> answer = tok->encode("Blue<|im_end|>\n", false);
  nlohmann::json ids = nlohmann::json::array(), lps = nlohmann::json::array();
  for (size_t r = 0; r < answer.size(); ++r) ids.push_back({answer[r], 5}), lps.push_back({-0.1, -2.5});
  const nlohmann::json line = {{"messages", messages}, {"teacher", {{"ids", ids}, {"logprobs", lps}}}, {"rationale", "Sky"}};
  const std::vector<Example> ex = load_lines(line.dump() + "\n", data);
  ASSERT_EQ(ex.size(), 2u);
  // The teacher's rows sit exactly on the assistant's trained rows, in order.
  std::vector<int32_t> on_rows;
  for (size_t i = 0; i < ex[0].tokens.size(); ++i) {
    EXPECT_EQ(ex[0].kd_mask[i], ex[0].ce_mask[i]) << i;
    if (ex[0].kd_mask[i]) {
      EXPECT_EQ(ex[0].teacher_ids[i * 2], ex[0].tokens[i + 1]) << i;
      on_rows.push_back(ex[0].teacher_ids[i * 2]);
    }
  }
  EXPECT_EQ(on_rows, answer);
  // The rationale continues the conversation before the assistant's message, generation prompt included.
  const std::vector<int32_t> prompt = tok->encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", false);
  EXPECT_EQ(ex[1].tokens, concat(concat(prompt, tok->encode("Sky", false)), {tok->eos_ids().front()}));
  EXPECT_TRUE(ex[1].rationale);
  // One row too many is refused, naming the line.
  ids.push_back({1, 2}), lps.push_back({0, 0});
  nlohmann::json bad = line;
  bad["teacher"] = {{"ids", ids}, {"logprobs", lps}};
  try {
    load_lines(bad.dump() + "\n", data);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.jsonl:1: the teacher has " + std::to_string(answer.size() + 1) +
                                         " rows but the assistant messages have " + std::to_string(answer.size())),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainDataset, ModelTemplateWithAThinkingBlock) {
  // The tiny chat model's own (Qwen3-style) template writes an empty thinking block into the last
  // assistant turn only: one turn trains on it; two turns are not prefix-stable and are refused.
  const auto tok = chat();
  ASSERT_FALSE(tok->chat_template().empty());
  const nlohmann::json one = {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Hello there"}}};
  const std::vector<Example> ex = load_lines(nlohmann::json{{"messages", one}}.dump() + "\n", data_tokenizer(tok));
  const ChatTemplate tmpl(tok->chat_template());
  EXPECT_EQ(ex[0].tokens, tok->encode(tmpl.render_chat(one.dump(), "", false), false));
  const auto spans = trained_spans(ex[0]);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(tok->decode(spans[0]), "<think>\n\n</think>\n\nHello there<|im_end|>\n");
  nlohmann::json two = one;
  two.push_back({{"role", "user"}, {"content", "More"}});
  two.push_back({{"role", "assistant"}, {"content", "Blue"}});
  try {
    load_lines(nlohmann::json{{"messages", two}}.dump() + "\n", data_tokenizer(tok));
    ADD_FAILURE() << "a conversation that is not prefix-stable was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.jsonl:1: the chat template does not render a prefix-stable"), std::string::npos)
        << e.what();
  }
}

TEST(TrainDataset, TruncateCutsOnlyWhenAsked) {
  const auto tok = stories();
  const std::string line = "{\"text\": \"Once upon a time, there was a little girl named Lily.\"}\n";
  const size_t full = tok->encode("Once upon a time, there was a little girl named Lily.", true).size();
  ASSERT_GT(full, 8u);
  try {
    load_lines(line, data_tokenizer(tok), 8);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("data.jsonl:1:"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(full) + " tokens, longer than the context of 8"), std::string::npos) << msg;
  }
  const std::vector<Example> ex = load_lines(line, data_tokenizer(tok), 8, true);
  ASSERT_EQ(ex[0].tokens.size(), 8u);
  const std::vector<int32_t> ids = tok->encode("Once upon a time, there was a little girl named Lily.", true);
  EXPECT_EQ(ex[0].tokens, std::vector<int32_t>(ids.begin(), ids.begin() + 8));
  expect_targets(ex[0]);
}

// Loads a file whose line 2 is `bad` and expects an error naming data.jsonl:2 and `needle`.
void expect_refused(const std::string& bad, const std::string& needle, const DataTokenizer& tok) {
  SCOPED_TRACE(bad);
  try {
    load_lines("{\"text\": \"fine\"}\n" + bad + "\n", tok);
    ADD_FAILURE() << "no error for " << bad;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("data.jsonl:2:"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(TrainDataset, EveryRefusalNamesTheLine) {
  const DataTokenizer tok = data_tokenizer(stories());
  expect_refused("{\"text\": \"a\"", "malformed JSON", tok);
  expect_refused("[1, 2]", "must be a JSON object", tok);
  expect_refused("{\"txt\": \"a\"}", "unknown field \"txt\"", tok);
  expect_refused("{\"weight\": 1}", "missing field", tok);
  expect_refused("{\"prompt\": \"a\"}", "\"prompt\" needs \"completion\"", tok);
  expect_refused("{\"text\": \"a\", \"prompt\": \"b\", \"completion\": \"c\"}", "exactly one of", tok);
  expect_refused("{\"text\": 3}", "\"text\" must be a string", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"\"}", "\"completion\" is empty", tok);
  expect_refused("{\"text\": \"a\", \"weight\": -1}", "\"weight\" is -1", tok);
  expect_refused("{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}", "needs a chat template", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[600]], \"logprobs\": [[0]]}}",
                 "teacher id 600 (row 0) is outside the vocabulary [0, 512)", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1],[2],[3],[4],[5],[6],[7]], "
                 "\"logprobs\": [[0],[0],[0],[0],[0],[0],[0]]}}",
                 "the teacher has 7 rows but the completion has", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1, 2], [3]], \"logprobs\": [[0, 0], [0]]}}",
                 "every row needs the same k", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1, 1]], \"logprobs\": [[0, 0]]}}",
                 "teacher id 1 repeats in row 0", tok);
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1]], \"logprobs\": [[1e999]]}}",
                 "malformed JSON", tok);  // a number beyond a double: JSON has no NaN or infinity
  expect_refused("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1]], \"logprobs\": [[\"x\"]]}}",
                 "logprob 0 is not a number", tok);
  expect_refused("{\"text\": " + std::string(300, '[') + std::string(300, ']') + "}", "nested more than", tok);
  expect_refused("{\"text\": \"a\", \"teacher\": {\"ids\": [[1]], \"logprobs\": [[0]]}}", "not \"text\"", tok);
}

// Pre-tokenized lines: the ids as given, every one after the first trained; they need no
// tokenizer, so a model whose tokenizer cannot be loaded still trains on them.
TEST(TrainDataset, TokenLinesNeedNoTokenizer) {
  const DataTokenizer none = token_ids_only(512, "no tokenizer here");
  const std::vector<Example> ex = load_lines("{\"tokens\": [5, 511, 0, 7], \"weight\": 2}\n", none);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].tokens, (std::vector<int32_t>{5, 511, 0, 7}));
  expect_targets(ex[0]);
  EXPECT_EQ(ex[0].ce_mask, (std::vector<uint8_t>{1, 1, 1, 0}));
  EXPECT_EQ(ex[0].weight, 2.0);
  const DataTokenizer tok = data_tokenizer(stories());
  expect_refused("{\"tokens\": [1, 512]}", "\"tokens\"[1] = 512 is outside the vocabulary of 512", tok);
  expect_refused("{\"tokens\": [1, 2.5]}", "\"tokens\"[1] is not an integer", tok);
  expect_refused("{\"tokens\": [1]}", "at least 2 ids", tok);
  expect_refused("{\"tokens\": [1, 2], \"text\": \"a\"}", "cannot be combined with \"text\"", tok);
  try {
    load_lines("{\"tokens\": [1, 2]}\n{\"text\": \"a\"}\n", none);
    ADD_FAILURE() << "a text line was read without a tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.jsonl:2: the model's tokenizer cannot be loaded (no tokenizer here)"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainDataset, ExtremeLogprobsRenormalizeToFiniteProbabilities) {
  // JSON has no NaN or infinity (see the refusals above); the most negative double still gives
  // finite probabilities, renormalized from the largest value.
  const DataTokenizer tok = data_tokenizer(stories());
  std::vector<Example> out;
  parse_example("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[1, 2]], \"logprobs\": [[-1.7e308, 0]]}}",
                1, "x:1", tok, {.max_seq = 64}, out);
  ASSERT_EQ(out.size(), 1u);
  for (float p : out[0].teacher_probs) EXPECT_TRUE(std::isfinite(p));
}

TEST(TrainDataset, TemplateThatIsNotPrefixStableIsRefused) {
  // A "template" that writes the message count first: adding a message changes earlier tokens.
  DataTokenizer tok = data_tokenizer(stories());
  tok.render_chat = [](const std::string& messages, bool) {
    return std::to_string(nlohmann::json::parse(messages).size()) + " " + messages;
  };
  expect_refused("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}",
                 "does not render a prefix-stable conversation", tok);
  expect_refused("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "no assistant message", tok);
  expect_refused("{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}", "role \"robot\"", tok);
}

}  // namespace
}  // namespace orchard::train
