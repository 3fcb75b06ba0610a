// Log-probabilities as a distillation teacher gives them: /v1/chat/completions' logprobs and
// top_logprobs, /v1/completions' logprobs, streamed and not, in OpenAI's shapes, and each value
// against an independent oracle: a Context of the same model (reference kernels) run over the same
// tokens, with the log-softmax of its logits computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/engine.h"
#include "orchard/model.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/metrics.h"
#include "server/openai_handler.h"
#include "server/openai_protocol.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

class Recorder : public ClientConnection {
 public:
  bool write(std::string_view bytes) override {
    text.append(bytes);
    return true;
  }
  bool client_present(std::string_view) override { return true; }
  std::string text;
};

struct Reply {
  int status = 0;
  std::string body;
};

// The server's objects over reference kernels, so that the oracle's Context computes the same sums.
struct Server {
  Server(const std::string& path, int64_t n_ctx)
      : model(Model::load(path, {.kernels = KernelChoice::reference})),
        tokenizer(load_model_tokenizer(*model)),
        engine(model, tokenizer, {.slots = 2, .n_ctx = n_ctx, .kernels = KernelChoice::reference, .n_threads = 1, .observer = &metrics}),
        service(tokenizer, "test-model", engine.n_ctx()),
        handler(service, engine, waker, metrics, {.stream_interval = std::chrono::milliseconds(10)}) {}

  Reply post(const std::string& path, const json& body) const {
    Recorder out;
    const ApiResponse r = handler.handle({.method = "POST", .path = path, .headers = {}, .body = body.dump(), .client_left = {}});
    Reply reply{r.status, r.body};
    if (r.write_body) {
      EXPECT_TRUE(r.write_body(out));
      reply.body = out.text;
    }
    return reply;
  }

  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  Metrics metrics;
  ChannelWaker waker;
  Engine engine;
  ChatService service;
  OpenAIHandler handler;
};

// The JSON of each server-sent event but [DONE].
std::vector<json> events_of(const std::string& text) {
  std::vector<json> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string data = text.substr(pos + 6, end - pos - 6);
    pos = end + 2;
    if (data != "[DONE]") out.push_back(json::parse(data));
  }
  return out;
}

// log_softmax of one row over the tokenizer's tokens, in double.
std::vector<double> log_softmax(const float* row, int64_t n) {
  double max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(row[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(row[i] - max);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = row[i] - max - std::log(sum);
  return out;
}

// Follows a generation token by token in its own Context: at each step the log-softmax of the
// model's logits, then the token the server says it chose (found by its bytes among the ids of
// the same text whose logprob matches).
class Oracle {
 public:
  Oracle(const Server& s, const std::vector<int32_t>& prompt)
      : server_(s), context_(s.model, {.n_ctx = 512, .kernels = KernelChoice::reference, .n_threads = 1}) {
    const std::vector<float> logits = context_.eval_last(prompt);
    set(logits.data());
  }
  const std::vector<double>& logprobs() const { return lp_; }
  // The id of the token with these bytes and (nearly) this logprob; -1 when none.
  int32_t find(const std::string& bytes, double logprob) const {
    for (int32_t id = 0; id < static_cast<int32_t>(lp_.size()); ++id)
      if (std::abs(lp_[id] - logprob) < 1e-3 && server_.tokenizer->token_bytes(id) == bytes) return id;
    return -1;
  }
  void advance(int32_t token) {
    const std::vector<float> logits = context_.eval_last(std::vector<int32_t>{token});
    set(logits.data());
  }
  std::vector<double> sorted() const {
    std::vector<double> s = lp_;
    std::sort(s.begin(), s.end(), std::greater<>());
    return s;
  }

 private:
  void set(const float* row) { lp_ = log_softmax(row, server_.tokenizer->vocab_size()); }
  const Server& server_;
  Context context_;
  std::vector<double> lp_;
};

// Whether `s` is whole UTF-8 (the JSON of a token that is not shows U+FFFD in its place).
bool whole_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

// The bytes of a legacy completions token: its text, or "bytes:\xNN..." for part of a character.
std::string legacy_bytes(const std::string& token) {
  if (token.rfind("bytes:", 0) != 0) return token;
  std::string out;
  for (size_t i = 6; i + 4 <= token.size(); i += 4) out.push_back(static_cast<char>(std::stoi(token.substr(i + 2, 2), nullptr, 16)));
  return out;
}

std::string bytes_of(const json& array) {
  std::string s;
  for (const json& b : array) s.push_back(static_cast<char>(b.get<int>()));
  return s;
}

class ServerLogprobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chat_ = new Server(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"), 512);
    stories_ = new Server(test::shared_path("models/stories260K/stories260K.gguf"), 256);
  }
  static void TearDownTestSuite() {
    delete chat_;
    delete stories_;
  }
  static Server* chat_;
  static Server* stories_;
};
Server* ServerLogprobs::chat_ = nullptr;
Server* ServerLogprobs::stories_ = nullptr;

const json kChat = {{"messages", json::array({{{"role", "user"}, {"content", "Tell me about apples."}}})},
                    {"max_tokens", 8}, {"logprobs", true}, {"top_logprobs", 20}};

// Checks one chat logprobs entry against the oracle's distribution and returns the chosen id.
int32_t check_chat_entry(const json& e, const Oracle& oracle, size_t n_top) {
  EXPECT_TRUE(e["token"].is_string());
  const std::string bytes = bytes_of(e["bytes"]);
  if (whole_utf8(bytes)) {
    EXPECT_EQ(e["token"].get<std::string>(), bytes);
  } else {
    EXPECT_NE(e["token"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
  }
  const double logprob = e["logprob"].get<double>();
  const int32_t id = oracle.find(bytes, logprob);
  EXPECT_GE(id, 0) << "no token '" << bytes << "' with logprob " << logprob;
  if (id >= 0) {
    EXPECT_NEAR(logprob, oracle.logprobs()[static_cast<size_t>(id)], 1e-4);
  }
  const json& top = e["top_logprobs"];
  EXPECT_EQ(top.size(), n_top);
  const std::vector<double> best = oracle.sorted();
  for (size_t i = 0; i < top.size(); ++i) {
    EXPECT_NEAR(top[i]["logprob"].get<double>(), best[i], 1e-4) << i;
    if (i > 0) {
      EXPECT_GE(top[i - 1]["logprob"].get<double>(), top[i]["logprob"].get<double>());
    }
    const std::string top_bytes = bytes_of(top[i]["bytes"]);
    if (whole_utf8(top_bytes)) {
      EXPECT_EQ(top[i]["token"].get<std::string>(), top_bytes);
    }
  }
  return id;
}

TEST_F(ServerLogprobs, ChatTop20AreTheRawModelDistribution) {
  // Sampled hot and penalized: the logprobs must still be the model's own distribution.
  json request = kChat;
  request["temperature"] = 1.5;
  request["frequency_penalty"] = 2.0;
  request["seed"] = 11;
  const Reply r = chat_->post("/v1/chat/completions", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = json::parse(r.body);
  const json& entries = body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(entries.size(), 8u) << r.body;
  Oracle oracle(*chat_, chat_->service.prepare(parse_chat_request(request)).prompt);
  for (const json& e : entries) {
    const int32_t id = check_chat_entry(e, oracle, 20);
    if (id < 0) return;
    oracle.advance(id);
  }
}

TEST_F(ServerLogprobs, ChatStreamedEntriesAreTheAnswers) {
  json request = kChat;
  request["temperature"] = 0;
  const json plain = json::parse(chat_->post("/v1/chat/completions", request).body);
  const json& entries = plain["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(entries.size(), 8u);
  Oracle oracle(*chat_, chat_->service.prepare(parse_chat_request(request)).prompt);
  for (const json& e : entries) {
    const int32_t id = check_chat_entry(e, oracle, 20);
    if (id < 0) return;
    // Greedy: the chosen token is the likeliest.
    EXPECT_NEAR(e["logprob"].get<double>(), e["top_logprobs"][0]["logprob"].get<double>(), 1e-6);
    oracle.advance(id);
  }
  request["stream"] = true;
  json streamed = json::array();
  for (const json& chunk : events_of(chat_->post("/v1/chat/completions", request).body))
    for (const json& choice : chunk["choices"])
      if (choice["logprobs"].is_object())
        for (const json& e : choice["logprobs"]["content"]) streamed.push_back(e);
  EXPECT_EQ(streamed, entries);
}

TEST_F(ServerLogprobs, CompletionsTop20InTheLegacyShape) {
  const std::string prompt = "Once upon a time";
  const json request = {{"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}, {"logprobs", 20}};
  const Reply r = stories_->post("/v1/completions", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = json::parse(r.body);
  const json& choice = body["choices"][0];
  const json& lp = choice["logprobs"];
  ASSERT_TRUE(lp.is_object()) << r.body;
  const json &tokens = lp["tokens"], &values = lp["token_logprobs"], &tops = lp["top_logprobs"], &offsets = lp["text_offset"];
  ASSERT_EQ(tokens.size(), 10u) << r.body;
  ASSERT_EQ(values.size(), 10u);
  ASSERT_EQ(tops.size(), 10u);
  ASSERT_EQ(offsets.size(), 10u);
  Oracle oracle(*stories_, stories_->service.prepare(parse_completion_request(request)).prompt);
  std::string joined;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string token = tokens[i], bytes = legacy_bytes(token);
    EXPECT_EQ(offsets[i].get<int64_t>(), static_cast<int64_t>(joined.size())) << i;
    joined += bytes;
    const double logprob = values[i];
    const int32_t id = oracle.find(bytes, logprob);
    ASSERT_GE(id, 0) << "no token '" << token << "' with logprob " << logprob;
    EXPECT_NEAR(logprob, oracle.logprobs()[static_cast<size_t>(id)], 1e-4);
    // {token: logprob}, the likeliest first: greedy, so the chosen token leads.
    const json& top = tops[i];
    ASSERT_TRUE(top.is_object());
    EXPECT_EQ(top.size(), 20u);
    const std::vector<double> best = oracle.sorted();
    size_t k = 0;
    double last = 0;
    for (auto& [text, value] : top.items()) {
      EXPECT_NEAR(value.get<double>(), best[k], 1e-4) << i << " " << k;
      if (k == 0) {
        EXPECT_EQ(text, token);
      } else {
        EXPECT_LE(value.get<double>(), last);
      }
      last = value.get<double>();
      ++k;
    }
    oracle.advance(id);
  }
  EXPECT_EQ(choice["text"].get<std::string>(), joined);

  // Streamed: the same tokens, values and offsets, chunk after chunk.
  json stream_request = request;
  stream_request["stream"] = true;
  json s_tokens = json::array(), s_values = json::array(), s_offsets = json::array(), s_tops = json::array();
  std::string s_text;
  for (const json& chunk : events_of(stories_->post("/v1/completions", stream_request).body))
    for (const json& c : chunk["choices"]) {
      s_text += c["text"].get<std::string>();
      if (!c["logprobs"].is_object()) continue;
      for (const json& t : c["logprobs"]["tokens"]) s_tokens.push_back(t);
      for (const json& t : c["logprobs"]["token_logprobs"]) s_values.push_back(t);
      for (const json& t : c["logprobs"]["text_offset"]) s_offsets.push_back(t);
      for (const json& t : c["logprobs"]["top_logprobs"]) s_tops.push_back(t);
    }
  EXPECT_EQ(s_tokens, tokens);
  EXPECT_EQ(s_values, values);
  EXPECT_EQ(s_offsets, offsets);
  EXPECT_EQ(s_tops, tops);
  EXPECT_EQ(s_text, choice["text"].get<std::string>());
}

TEST_F(ServerLogprobs, CompletionsLogprobsZeroGiveTheChosenOnly) {
  const json body = json::parse(
      stories_->post("/v1/completions", {{"prompt", "The cat"}, {"max_tokens", 3}, {"temperature", 0}, {"logprobs", 0}})
          .body);
  const json& lp = body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 3u) << body;
  EXPECT_EQ(lp["text_offset"][0].get<int64_t>(), 0);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(lp["top_logprobs"][i].size(), 1u);
    EXPECT_EQ(lp["top_logprobs"][i][lp["tokens"][i].get<std::string>()], lp["token_logprobs"][i]);
  }
  const json plain = json::parse(stories_->post("/v1/completions", {{"prompt", "The cat"}, {"max_tokens", 2}}).body);
  EXPECT_TRUE(plain["choices"][0]["logprobs"].is_null());
}

// Every prompt position's log-softmax, from one Context pass over the prompt.
std::vector<std::vector<double>> prompt_logprobs(const Server& s, const std::vector<int32_t>& prompt) {
  Context context(s.model, {.n_ctx = 512, .kernels = KernelChoice::reference, .n_threads = 1});
  const std::vector<float> logits = context.eval(prompt);
  const int64_t n_vocab = s.model->config().n_vocab;
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < prompt.size(); ++i)
    out.push_back(log_softmax(logits.data() + i * n_vocab, s.tokenizer->vocab_size()));
  return out;
}

// The lists of a completion's logprobs, streamed or not.
json completion_lists(const Server& s, json request) {
  json lists = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
                {"text_offset", json::array()}};
  const Reply r = s.post("/v1/completions", request);
  EXPECT_EQ(r.status, 200) << r.body;
  const std::vector<json> chunks =
      request.value("stream", false) ? events_of(r.body) : std::vector<json>{json::parse(r.body)};
  std::string text;
  for (const json& chunk : chunks)
    for (const json& c : chunk["choices"]) {
      text += c["text"].get<std::string>();
      if (!c["logprobs"].is_object()) continue;
      for (auto& [key, list] : lists.items())
        for (const json& v : c["logprobs"][key]) list.push_back(v);
    }
  lists["text"] = text;
  return lists;
}

TEST_F(ServerLogprobs, CompletionsEchoWithZeroTokensScoresThePrompt) {
  const std::string prompt = "Once upon a time, there was a little girl named Lily.";
  const json request = {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 5}};
  const std::vector<int32_t> tokens = stories_->service.prepare(parse_completion_request(request)).prompt;
  ASSERT_GT(tokens.size(), 5u);
  const std::vector<std::vector<double>> oracle = prompt_logprobs(*stories_, tokens);
  for (bool stream : {false, true}) {
    json r = request;
    r["stream"] = stream;
    const json lists = completion_lists(*stories_, r);
    SCOPED_TRACE(stream ? "streamed" : "not streamed");
    EXPECT_EQ(lists["text"], prompt);
    ASSERT_EQ(lists["tokens"].size(), tokens.size()) << lists;
    // Nothing comes before the first token: OpenAI's null.
    EXPECT_TRUE(lists["token_logprobs"][0].is_null());
    EXPECT_TRUE(lists["top_logprobs"][0].is_null());
    EXPECT_EQ(lists["text_offset"][0], 0);
    // Offsets index the echoed text, as OpenAI's: the prompt cut at consecutive offsets gives each
    // token's text, except that BOS has none in the prompt and the first word's piece lacks the
    // space SentencePiece writes before it.
    bool first_word = true;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string bytes = stories_->tokenizer->token_bytes(tokens[i]);
      EXPECT_EQ(legacy_bytes(lists["tokens"][i]), bytes) << i;
      const int64_t begin = lists["text_offset"][i].get<int64_t>();
      const int64_t end = i + 1 < tokens.size() ? lists["text_offset"][i + 1].get<int64_t>()
                                                : static_cast<int64_t>(prompt.size());
      std::string want = bytes;
      if (stories_->tokenizer->is_special(tokens[i])) {
        want.clear();
      } else if (first_word) {
        first_word = false;
        if (want.starts_with(" ")) want.erase(0, 1);
      }
      EXPECT_EQ(prompt.substr(static_cast<size_t>(begin), static_cast<size_t>(end - begin)), want) << i;
      if (i == 0) continue;
      // Token i under the distribution of position i - 1.
      const std::vector<double>& lp = oracle[i - 1];
      EXPECT_NEAR(lists["token_logprobs"][i].get<double>(), lp[static_cast<size_t>(tokens[i])], 1e-4) << i;
      std::vector<double> best = lp;
      std::sort(best.begin(), best.end(), std::greater<>());
      const json& top = lists["top_logprobs"][i];
      ASSERT_GE(top.size(), 5u);
      ASSERT_LE(top.size(), 6u);
      size_t k = 0;
      for (auto& [text, value] : top.items()) {
        if (k < 5) {
          EXPECT_NEAR(value.get<double>(), best[k], 1e-4) << i << " " << k;
        } else {  // the chosen token, beyond the five likeliest
          EXPECT_NEAR(value.get<double>(), lp[static_cast<size_t>(tokens[i])], 1e-4) << i;
        }
        ++k;
      }
    }
  }
  // A second time the slot's cache holds the prompt: every position must still be computed.
  EXPECT_EQ(completion_lists(*stories_, request), completion_lists(*stories_, request));
}

TEST_F(ServerLogprobs, CompletionsEchoThenGeneratedTokens) {
  const std::string prompt = "The dog ran";
  const json request = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}, {"echo", true}, {"logprobs", 1}};
  const std::vector<int32_t> tokens = stories_->service.prepare(parse_completion_request(request)).prompt;
  const std::vector<std::vector<double>> oracle = prompt_logprobs(*stories_, tokens);
  Oracle generated(*stories_, tokens);
  for (bool stream : {false, true}) {
    json r = request;
    r["stream"] = stream;
    const json lists = completion_lists(*stories_, r);
    ASSERT_EQ(lists["tokens"].size(), tokens.size() + 4) << lists;
    for (size_t i = 1; i < tokens.size(); ++i)
      EXPECT_NEAR(lists["token_logprobs"][i].get<double>(), oracle[i - 1][static_cast<size_t>(tokens[i])], 1e-4) << i;
    // The generated tokens' offsets start after the echoed text.
    EXPECT_EQ(lists["text_offset"][tokens.size()].get<int64_t>(), static_cast<int64_t>(prompt.size()));
    EXPECT_EQ(lists["text"].get<std::string>().rfind(prompt, 0), 0u);
  }
  // The first generated token is the greedy one after the prompt, with its logprob.
  const json lists = completion_lists(*stories_, request);
  const std::vector<double> best = generated.sorted();
  EXPECT_NEAR(lists["token_logprobs"][tokens.size()].get<double>(), best[0], 1e-4);
}

TEST_F(ServerLogprobs, ZeroTokensWithoutEchoIsRefused) {
  const Reply r = stories_->post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 0}});
  EXPECT_EQ(r.status, 400);
  const json error = json::parse(r.body)["error"];
  EXPECT_EQ(error["param"], "max_tokens");
  EXPECT_NE(error["message"].get<std::string>().find("needs 'echo': true"), std::string::npos) << r.body;
}

TEST_F(ServerLogprobs, MoreThan20IsRefusedNamingTheField) {
  json chat = kChat;
  chat["top_logprobs"] = 21;
  Reply r = chat_->post("/v1/chat/completions", chat);
  EXPECT_EQ(r.status, 400);
  json error = json::parse(r.body)["error"];
  EXPECT_EQ(error["param"], "top_logprobs");
  EXPECT_NE(error["message"].get<std::string>().find("'top_logprobs' must be between 0 and 20"), std::string::npos) << r.body;
  r = stories_->post("/v1/completions", {{"prompt", "Once"}, {"logprobs", 21}});
  EXPECT_EQ(r.status, 400);
  error = json::parse(r.body)["error"];
  EXPECT_EQ(error["param"], "logprobs");
  EXPECT_NE(error["message"].get<std::string>().find("'logprobs' must be between 0 and 20"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace orchard::server
