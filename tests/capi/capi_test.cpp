// The C API (include/orchard/orchard_c.h): every bad input is an error code with text (never an
// abort or an exception), the token callback stops generation, results equal the C++ API's
// (tokenizer, chat template, llama2.c's greedy stories260K text), sessions reuse their cache.
#include "orchard/orchard_c.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/chat_template.h"
#include "orchard/tokenizer.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct ModelDeleter {
  void operator()(orchard_model* m) const { orchard_model_free(m); }
};
struct SessionDeleter {
  void operator()(orchard_session* s) const { orchard_session_free(s); }
};
using ModelPtr = std::unique_ptr<orchard_model, ModelDeleter>;
using SessionPtr = std::unique_ptr<orchard_session, SessionDeleter>;

std::string stories_gguf() { return test::shared_path("models/stories260K/stories260K.gguf"); }
std::string tiny_chat() { return test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"); }

ModelPtr load(const std::string& path, const char* tokenizer = nullptr, int64_t n_ctx = 0) {
  orchard_model_options options;
  EXPECT_EQ(orchard_model_options_init(&options), ORCHARD_OK);
  options.n_ctx = n_ctx;
  orchard_model* model = nullptr;
  const int status = orchard_model_load(path.c_str(), tokenizer, &options, &model);
  EXPECT_EQ(status, ORCHARD_OK) << orchard_last_error();
  return ModelPtr(model);
}

SessionPtr session_of(const orchard_model* model) {
  orchard_session* session = nullptr;
  EXPECT_EQ(orchard_session_create(model, &session), ORCHARD_OK) << orchard_last_error();
  return SessionPtr(session);
}

std::vector<int32_t> tokenize(const orchard_model* model, const std::string& text, bool bos) {
  size_t n = 0;
  const int status = orchard_tokenize(model, text.data(), text.size(), bos, nullptr, 0, &n);
  EXPECT_TRUE(status == ORCHARD_OK || status == ORCHARD_ERR_BUFFER_TOO_SMALL) << orchard_last_error();
  std::vector<int32_t> ids(n);
  EXPECT_EQ(orchard_tokenize(model, text.data(), text.size(), bos, ids.data(), ids.size(), &n), ORCHARD_OK)
      << orchard_last_error();
  ids.resize(n);
  return ids;
}

std::string detokenize(const orchard_model* model, const std::vector<int32_t>& ids) {
  size_t len = 0;
  const int status = orchard_detokenize(model, ids.data(), ids.size(), 0, nullptr, 0, &len);
  EXPECT_TRUE(status == ORCHARD_OK || status == ORCHARD_ERR_BUFFER_TOO_SMALL) << orchard_last_error();
  std::string text(len + 1, '\0');
  EXPECT_EQ(orchard_detokenize(model, ids.data(), ids.size(), 0, text.data(), text.size(), &len), ORCHARD_OK)
      << orchard_last_error();
  text.resize(len);
  return text;
}

// Collects the pieces; stops after `stop_after` calls when positive.
struct Collector {
  std::string text;
  std::vector<int32_t> tokens;
  int calls = 0;
  int stop_after = 0;
  orchard_session* cancel = nullptr;  // cancelled from the callback's thread after stop_after calls

  static int callback(const char* text, size_t len, int32_t token, void* user) {
    auto* self = static_cast<Collector*>(user);
    self->text.append(text, len);
    if (token >= 0) self->tokens.push_back(token);
    ++self->calls;
    if (self->stop_after > 0 && self->calls >= self->stop_after) {
      if (!self->cancel) return 1;
      orchard_session_cancel(self->cancel);
    }
    return 0;
  }
};

orchard_sampling_options greedy(int64_t max_tokens) {
  orchard_sampling_options o;
  orchard_sampling_options_init(&o);
  o.temperature = 0;
  o.max_tokens = max_tokens;
  return o;
}

// The error text names the function and says something.
void expect_error(int status, int expected, const char* function, const std::string& contains = "") {
  EXPECT_EQ(status, expected) << orchard_status_name(status) << ": " << orchard_last_error();
  const std::string error = orchard_last_error();
  EXPECT_NE(error.find(function), std::string::npos) << error;
  EXPECT_NE(error.find(contains), std::string::npos) << "'" << contains << "' not in: " << error;
}

TEST(Capi, VersionStatusNamesAndDefaults) {
  EXPECT_STREQ(orchard_version(), "0.1.0");
  EXPECT_STREQ(orchard_status_name(ORCHARD_ERR_NOT_FOUND), "ORCHARD_ERR_NOT_FOUND");
  EXPECT_STREQ(orchard_status_name(12345), "ORCHARD_ERR_UNKNOWN");
  orchard_sampling_options s;
  ASSERT_EQ(orchard_sampling_options_init(&s), ORCHARD_OK);
  EXPECT_EQ(s.struct_size, sizeof s);
  EXPECT_FLOAT_EQ(s.temperature, 0.8f);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_EQ(s.max_tokens, -1);
  orchard_model_options m;
  ASSERT_EQ(orchard_model_options_init(&m), ORCHARD_OK);
  EXPECT_STREQ(m.kernels, "fast");
  EXPECT_STREQ(orchard_last_error(), "");
}

TEST(Capi, NullHandlesAndPointersAreErrors) {
  orchard_model* model = reinterpret_cast<orchard_model*>(0x1);
  expect_error(orchard_model_load(nullptr, nullptr, nullptr, &model), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "path is NULL");
  EXPECT_EQ(model, nullptr);  // *out is NULL after a failure
  expect_error(orchard_model_load(stories_gguf().c_str(), nullptr, nullptr, nullptr), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "out is NULL");
  expect_error(orchard_model_options_init(nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_model_options_init");
  expect_error(orchard_sampling_options_init(nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_sampling_options_init");

  size_t n = 0;
  int32_t ids[4] = {1, 2, 3, 4};
  char text[16];
  expect_error(orchard_tokenize(nullptr, "a", 1, 0, ids, 4, &n), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_tokenize",
               "model handle is NULL");
  expect_error(orchard_detokenize(nullptr, ids, 1, 0, text, sizeof text, &n), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_detokenize", "model handle is NULL");
  expect_error(orchard_apply_chat_template(nullptr, "[]", nullptr, 1, text, sizeof text, &n),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_apply_chat_template", "model handle is NULL");
  orchard_model_info info = {sizeof info};
  expect_error(orchard_model_get_info(nullptr, &info), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_model_get_info");
  orchard_session* session = nullptr;
  expect_error(orchard_session_create(nullptr, &session), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_create");
  expect_error(orchard_session_generate(nullptr, ids, 1, nullptr, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "session handle is NULL");
  expect_error(orchard_session_reset(nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_reset");
  expect_error(orchard_session_cancel(nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_cancel");
  orchard_model_free(nullptr);  // accepted, like free(NULL)
  orchard_session_free(nullptr);

  ModelPtr m = load(stories_gguf());
  ASSERT_TRUE(m);
  expect_error(orchard_tokenize(m.get(), nullptr, 3, 0, ids, 4, &n), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_tokenize", "text is NULL");
  expect_error(orchard_tokenize(m.get(), "a", 1, 0, ids, 4, nullptr), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_tokenize", "n_tokens is NULL");
  expect_error(orchard_tokenize(m.get(), "a", 1, 0, nullptr, 4, &n), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_tokenize", "tokens is NULL");
  EXPECT_EQ(orchard_tokenize(m.get(), nullptr, 0, 0, ids, 4, &n), ORCHARD_OK) << orchard_last_error();
  EXPECT_EQ(n, 0u);
  expect_error(orchard_detokenize(m.get(), nullptr, 2, 0, text, sizeof text, &n), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_detokenize", "tokens is NULL");
  expect_error(orchard_detokenize(m.get(), ids, 1, 0, nullptr, 8, &n), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_detokenize", "buffer is NULL");
  expect_error(orchard_detokenize(m.get(), ids, 1, 0, text, sizeof text, nullptr), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_detokenize", "len is NULL");
  expect_error(orchard_model_get_info(m.get(), nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_model_get_info");
  orchard_model_info bad_info = {3};
  expect_error(orchard_model_get_info(m.get(), &bad_info), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_model_get_info",
               "struct_size");
  expect_error(orchard_session_create(m.get(), nullptr), ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_create");
  // A handle of the other kind is refused, not used.
  expect_error(orchard_session_reset(reinterpret_cast<orchard_session*>(m.get())), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_session_reset", "not a session handle");

  SessionPtr s = session_of(m.get());
  expect_error(orchard_session_generate(s.get(), nullptr, 3, nullptr, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "prompt is NULL");
  expect_error(orchard_session_generate(s.get(), ids, 0, nullptr, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "no tokens");
  orchard_generate_result bad_result = {0};
  expect_error(orchard_session_generate(s.get(), ids, 1, nullptr, nullptr, nullptr, &bad_result),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "result.struct_size");
  // A success clears the thread's error text.
  EXPECT_EQ(orchard_tokenize(m.get(), "a", 1, 0, ids, 4, &n), ORCHARD_OK);
  EXPECT_STREQ(orchard_last_error(), "");
}

TEST(Capi, FilesThatDoNotExistOrAreNotModels) {
  orchard_model* model = nullptr;
  expect_error(orchard_model_load("/nonexistent/model.gguf", nullptr, nullptr, &model), ORCHARD_ERR_NOT_FOUND,
               "orchard_model_load", "/nonexistent/model.gguf: no such file");
  EXPECT_EQ(model, nullptr);
  expect_error(orchard_model_load(stories_gguf().c_str(), "/nonexistent/tok.bin", nullptr, &model),
               ORCHARD_ERR_NOT_FOUND, "orchard_model_load", "/nonexistent/tok.bin");
  // A llama2.c checkpoint has no tokenizer of its own, and there is no tokenizer.bin beside this one.
  const std::string bin = test::shared_path("models/stories260K/stories260K.bin");
  expect_error(orchard_model_load(bin.c_str(), nullptr, nullptr, &model), ORCHARD_ERR_NOT_FOUND,
               "orchard_model_load", "tokenizer_path");
  test::TempDir dir;
  const std::string junk = dir.write("junk.gguf", std::string("GGUF\x03\0\0\0 not really", 20));
  expect_error(orchard_model_load(junk.c_str(), nullptr, nullptr, &model), ORCHARD_ERR_BAD_FILE, "orchard_model_load",
               junk);
  EXPECT_EQ(model, nullptr);
  // The wrong tokenizer for the model: the tiny chat model's vocabulary (1024) is larger than the
  // stories model's embedding (512 rows).
  expect_error(orchard_model_load(stories_gguf().c_str(), tiny_chat().c_str(), nullptr, &model), ORCHARD_ERR_BAD_FILE,
               "orchard_model_load", "tokens but the model's embedding");

  // With its tokenizer the checkpoint loads.
  const std::string tok = test::shared_path("models/stories260K/tok512.bin");
  ModelPtr m = load(bin, tok.c_str());
  EXPECT_TRUE(m);
}

TEST(Capi, BadOptionsAreRefused) {
  orchard_model* model = nullptr;
  orchard_model_options options;
  orchard_model_options_init(&options);
  options.kernels = "turbo";
  expect_error(orchard_model_load(stories_gguf().c_str(), nullptr, &options, &model), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "\"turbo\"");
  orchard_model_options_init(&options);
  options.kv_cache_type = "f8";
  expect_error(orchard_model_load(stories_gguf().c_str(), nullptr, &options, &model), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "kv_cache_type");
  orchard_model_options_init(&options);
  options.n_ctx = -5;
  expect_error(orchard_model_load(stories_gguf().c_str(), nullptr, &options, &model), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "n_ctx");
  orchard_model_options_init(&options);
  options.struct_size = 7;
  expect_error(orchard_model_load(stories_gguf().c_str(), nullptr, &options, &model), ORCHARD_ERR_INVALID_ARGUMENT,
               "orchard_model_load", "struct_size");

  ModelPtr m = load(stories_gguf());
  SessionPtr s = session_of(m.get());
  const int32_t prompt[] = {1, 403};
  orchard_sampling_options o = greedy(4);
  o.top_p = 0;
  expect_error(orchard_session_generate(s.get(), prompt, 2, &o, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "top_p");
  o = greedy(4);
  o.temperature = NAN;
  expect_error(orchard_session_generate(s.get(), prompt, 2, &o, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "temperature");
  o = greedy(4);
  const char* stops[] = {"fine", "\xC3\x28"};
  o.stop = stops;
  o.n_stop = 2;
  expect_error(orchard_session_generate(s.get(), prompt, 2, &o, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "stop[1] is not valid UTF-8");
  const char* null_stop[] = {nullptr};
  o.stop = null_stop;
  o.n_stop = 1;
  expect_error(orchard_session_generate(s.get(), prompt, 2, &o, nullptr, nullptr, nullptr),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_session_generate", "stop[0] is NULL");
}

TEST(Capi, InvalidUtf8OutOfRangeIdsAndSmallBuffers) {
  ModelPtr m = load(stories_gguf());
  ASSERT_TRUE(m);
  size_t n = 0;
  int32_t ids[64];
  // Refused (the C++ Tokenizer::encode would take the bytes): a lone continuation byte, a
  // truncated sequence, an overlong form, a surrogate.
  for (const std::string& bad : {std::string("ab\x80"), std::string("x\xE2\x82"), std::string("\xC0\xAF"),
                                std::string("\xED\xA0\x80")}) {
    expect_error(orchard_tokenize(m.get(), bad.data(), bad.size(), 1, ids, 64, &n), ORCHARD_ERR_INVALID_ARGUMENT,
                 "orchard_tokenize", "not valid UTF-8");
  }
  // An embedded NUL is text like any other.
  EXPECT_EQ(orchard_tokenize(m.get(), "a\0b", 3, 0, ids, 64, &n), ORCHARD_OK) << orchard_last_error();

  const std::string text = "Once upon a time";
  ASSERT_EQ(orchard_tokenize(m.get(), text.data(), text.size(), 1, ids, 2, &n), ORCHARD_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(n, 5u);  // what the buffer must hold
  EXPECT_NE(std::string(orchard_last_error()).find("5 tokens"), std::string::npos) << orchard_last_error();

  const int32_t out_of_range[] = {1, 403, 512};
  char buffer[64];
  expect_error(orchard_detokenize(m.get(), out_of_range, 3, 0, buffer, sizeof buffer, &n), ORCHARD_ERR_OUT_OF_RANGE,
               "orchard_detokenize", "token id 512 (at index 2)");
  const int32_t negative[] = {-1};
  expect_error(orchard_detokenize(m.get(), negative, 1, 0, buffer, sizeof buffer, &n), ORCHARD_ERR_OUT_OF_RANGE,
               "orchard_detokenize", "-1");
  const int32_t once[] = {403, 407, 261, 378};
  const std::string expected = detokenize(m.get(), {403, 407, 261, 378});
  ASSERT_EQ(orchard_detokenize(m.get(), once, 4, 0, buffer, expected.size(), &n), ORCHARD_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(n, expected.size());  // the buffer needs n + 1 for the NUL
  ASSERT_EQ(orchard_detokenize(m.get(), once, 4, 0, buffer, expected.size() + 1, &n), ORCHARD_OK);
  EXPECT_EQ(std::string(buffer), expected);

  SessionPtr s = session_of(m.get());
  orchard_sampling_options o = greedy(4);
  expect_error(orchard_session_generate(s.get(), out_of_range, 3, &o, nullptr, nullptr, nullptr),
               ORCHARD_ERR_OUT_OF_RANGE, "orchard_session_generate", "prompt token id 512");
  const int32_t huge[] = {1, 2000000000};
  expect_error(orchard_session_generate(s.get(), huge, 2, &o, nullptr, nullptr, nullptr), ORCHARD_ERR_OUT_OF_RANGE,
               "orchard_session_generate", "2000000000");

  // A prompt that leaves no room in the context.
  ModelPtr small = load(stories_gguf(), nullptr, 8);
  SessionPtr small_session = session_of(small.get());
  const std::vector<int32_t> long_prompt(8, 403);
  expect_error(orchard_session_generate(small_session.get(), long_prompt.data(), long_prompt.size(), &o, nullptr,
                                        nullptr, nullptr),
               ORCHARD_ERR_OUT_OF_RANGE, "orchard_session_generate", "context");
}

TEST(Capi, ErrorTextIsPerThread) {
  orchard_model* model = nullptr;
  ASSERT_EQ(orchard_model_load("/nonexistent/a.gguf", nullptr, nullptr, &model), ORCHARD_ERR_NOT_FOUND);
  std::string other;
  std::thread([&] {
    other = orchard_last_error();
    orchard_model* m = nullptr;
    orchard_model_load("/nonexistent/b.gguf", nullptr, nullptr, &m);
  }).join();
  EXPECT_EQ(other, "");
  EXPECT_NE(std::string(orchard_last_error()).find("/nonexistent/a.gguf"), std::string::npos);
}

TEST(Capi, TokenizeAndDetokenizeEqualTheCppTokenizer) {
  const std::vector<std::string> texts = {"Once upon a time", "", " leading space", "Lily and Ben went to the park.\n",
                                          "héllo wörld ✓ 日本語 😀", "<|im_start|>user\nhi<|im_end|>"};
  for (const std::string& path : {stories_gguf(), tiny_chat()}) {
    ModelPtr m = load(path);
    ASSERT_TRUE(m);
    const auto tokenizer = Tokenizer::load(path);
    orchard_model_info info = {sizeof info};
    ASSERT_EQ(orchard_model_get_info(m.get(), &info), ORCHARD_OK) << orchard_last_error();
    EXPECT_EQ(info.n_vocab, tokenizer->vocab_size());
    EXPECT_EQ(info.bos_token, tokenizer->bos_id().value_or(-1));
    for (const std::string& text : texts) {
      for (bool bos : {false, true}) {
        const std::vector<int32_t> ids = tokenize(m.get(), text, bos);
        EXPECT_EQ(ids, tokenizer->encode(text, bos)) << path << ": " << text;
        EXPECT_EQ(detokenize(m.get(), ids), tokenizer->decode(ids)) << path << ": " << text;
      }
      if (path == stories_gguf()) {
        EXPECT_EQ(detokenize(m.get(), tokenize(m.get(), text, false)), text);  // SentencePiece round trip
      }
    }
  }
}

TEST(Capi, ChatTemplateEqualsTheCppChatTemplate) {
  ModelPtr m = load(tiny_chat());
  ASSERT_TRUE(m);
  orchard_model_info info = {sizeof info};
  ASSERT_EQ(orchard_model_get_info(m.get(), &info), ORCHARD_OK);
  EXPECT_EQ(info.has_chat_template, 1);
  const auto tokenizer = Tokenizer::load(tiny_chat());
  const std::vector<int32_t> eos = tokenizer->eos_ids();
  const ChatTemplate reference(tokenizer->chat_template(),
                               tokenizer->bos_id() ? tokenizer->token_text(*tokenizer->bos_id()) : "",
                               eos.empty() ? "" : tokenizer->token_text(eos.front()));
  const std::string messages =
      R"([{"role":"system","content":"You are terse."},{"role":"user","content":"Hi ✓"},)"
      R"({"role":"assistant","content":"Hello."},{"role":"user","content":"And now?"}])";
  const std::string tools = R"([{"type":"function","function":{"name":"get_time","description":"Now",)"
                            R"("parameters":{"type":"object","properties":{}}}}])";
  for (bool generation_prompt : {true, false}) {
    for (const char* t : {static_cast<const char*>(nullptr), tools.c_str()}) {
      size_t len = 0;
      ASSERT_EQ(orchard_apply_chat_template(m.get(), messages.c_str(), t, generation_prompt, nullptr, 0, &len),
                ORCHARD_ERR_BUFFER_TOO_SMALL);
      std::string out(len + 1, '\0');
      ASSERT_EQ(orchard_apply_chat_template(m.get(), messages.c_str(), t, generation_prompt, out.data(), out.size(), &len),
                ORCHARD_OK)
          << orchard_last_error();
      out.resize(len);
      EXPECT_EQ(out, reference.render_chat(messages, t ? tools : "", generation_prompt));
    }
  }
  char buffer[256];
  size_t len = 0;
  expect_error(orchard_apply_chat_template(m.get(), "[{\"role\": ", nullptr, 1, buffer, sizeof buffer, &len),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_apply_chat_template", "messages");
  expect_error(orchard_apply_chat_template(m.get(), "[{\"role\":\"user\",\"content\":\"\xFF\"}]", nullptr, 1, buffer,
                                           sizeof buffer, &len),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_apply_chat_template", "not valid UTF-8");
  expect_error(orchard_apply_chat_template(m.get(), nullptr, nullptr, 1, buffer, sizeof buffer, &len),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_apply_chat_template", "messages_json is NULL");
  // Hostile nesting is refused by the JSON depth bound, not followed down the stack.
  const std::string deep = "[" + std::string(100000, '[') + std::string(100000, ']') + "]";
  expect_error(orchard_apply_chat_template(m.get(), deep.c_str(), nullptr, 1, buffer, sizeof buffer, &len),
               ORCHARD_ERR_INVALID_ARGUMENT, "orchard_apply_chat_template", "nest");

  ModelPtr stories = load(stories_gguf());
  expect_error(orchard_apply_chat_template(stories.get(), "[]", nullptr, 1, buffer, sizeof buffer, &len),
               ORCHARD_ERR_NOT_FOUND, "orchard_apply_chat_template", "no chat template");
}

TEST(Capi, Stories260KGreedyMatchesLlama2c) {
  const auto expected = nlohmann::json::parse(
      test::read_text(test::shared_path("models/stories260K/expected_generation.json")));
  ModelPtr m = load(stories_gguf());
  ASSERT_TRUE(m);
  SessionPtr s = session_of(m.get());
  for (const auto& c : expected["cases"]) {
    const std::vector<int32_t> prompt = tokenize(m.get(), c["prompt"].get<std::string>(), true);
    ASSERT_EQ(prompt, c["prompt_tokens"].get<std::vector<int32_t>>());
    Collector collected;
    orchard_sampling_options o = greedy(c["generated_tokens"].get<int64_t>());
    orchard_generate_result result = {sizeof result};
    ASSERT_EQ(orchard_session_generate(s.get(), prompt.data(), prompt.size(), &o, Collector::callback, &collected,
                                       &result),
              ORCHARD_OK)
        << orchard_last_error();
    EXPECT_EQ(collected.text, c["expected_continuation"].get<std::string>());
    EXPECT_EQ(result.stop_reason, ORCHARD_STOP_MAX_TOKENS);
    EXPECT_EQ(result.completion_tokens, c["generated_tokens"].get<int64_t>());
    EXPECT_EQ(result.prompt_tokens, static_cast<int64_t>(prompt.size()));
    EXPECT_EQ(collected.tokens.size(), static_cast<size_t>(result.completion_tokens));
    // The pieces are the tokens' text, decoded after the prompt (SentencePiece drops a text's
    // leading space only at its very start).
    std::vector<int32_t> all(prompt.begin() + 1, prompt.end());
    all.insert(all.end(), collected.tokens.begin(), collected.tokens.end());
    EXPECT_EQ(detokenize(m.get(), all), c["prompt"].get<std::string>() + collected.text);
  }
}

TEST(Capi, CallbackStopsGenerationAndCancelStopsIt) {
  ModelPtr m = load(stories_gguf());
  SessionPtr s = session_of(m.get());
  const std::vector<int32_t> prompt = tokenize(m.get(), "Once upon a time", true);
  orchard_sampling_options o = greedy(100);
  Collector stopper;
  stopper.stop_after = 3;
  orchard_generate_result result = {sizeof result};
  ASSERT_EQ(orchard_session_generate(s.get(), prompt.data(), prompt.size(), &o, Collector::callback, &stopper, &result),
            ORCHARD_OK)
      << orchard_last_error();
  EXPECT_EQ(stopper.calls, 3);
  EXPECT_EQ(result.stop_reason, ORCHARD_STOP_CALLBACK);
  EXPECT_EQ(result.completion_tokens, 3);

  // orchard_session_cancel from another thread (the callback's, an engine thread).
  Collector canceller;
  canceller.stop_after = 2;
  canceller.cancel = s.get();
  ASSERT_EQ(orchard_session_generate(s.get(), prompt.data(), prompt.size(), &o, Collector::callback, &canceller,
                                     &result),
            ORCHARD_OK)
      << orchard_last_error();
  EXPECT_EQ(result.stop_reason, ORCHARD_STOP_CANCELLED);
  EXPECT_EQ(canceller.calls, 2);
  EXPECT_LE(result.completion_tokens, 3);

  // The session works on after both.
  Collector all;
  o.max_tokens = 5;
  ASSERT_EQ(orchard_session_generate(s.get(), prompt.data(), prompt.size(), &o, Collector::callback, &all, &result),
            ORCHARD_OK);
  EXPECT_EQ(result.stop_reason, ORCHARD_STOP_MAX_TOKENS);
  EXPECT_EQ(result.completion_tokens, 5);

  // A C++ callback that throws ends the generation with an error, not std::terminate.
  auto thrower = [](const char*, size_t, int32_t, void*) -> int { throw std::runtime_error("boom"); };
  expect_error(orchard_session_generate(s.get(), prompt.data(), prompt.size(), &o, thrower, nullptr, &result),
               ORCHARD_ERR_INTERNAL, "orchard_session_generate", "boom");
}

TEST(Capi, SecondTurnReusesTheSessionCache) {
  ModelPtr m = load(stories_gguf());
  SessionPtr s = session_of(m.get());
  std::vector<int32_t> conversation = tokenize(m.get(), "Lily and Ben went to the", true);
  orchard_sampling_options o = greedy(12);
  Collector first;
  orchard_generate_result result = {sizeof result};
  ASSERT_EQ(orchard_session_generate(s.get(), conversation.data(), conversation.size(), &o, Collector::callback, &first,
                                     &result),
            ORCHARD_OK)
      << orchard_last_error();
  EXPECT_EQ(result.reused_tokens, 0);
  ASSERT_EQ(first.tokens.size(), 12u);
  // The next turn: the conversation so far, its reply and more text.
  conversation.insert(conversation.end(), first.tokens.begin(), first.tokens.end());
  const std::vector<int32_t> more = tokenize(m.get(), " Then they", false);
  conversation.insert(conversation.end(), more.begin(), more.end());
  Collector second;
  ASSERT_EQ(orchard_session_generate(s.get(), conversation.data(), conversation.size(), &o, Collector::callback,
                                     &second, &result),
            ORCHARD_OK)
      << orchard_last_error();
  // Everything the first turn computed: its prompt and all its tokens but the last, which was
  // sampled and not yet run.
  const int64_t first_turn = static_cast<int64_t>(conversation.size() - more.size());
  EXPECT_EQ(result.reused_tokens, first_turn - 1);
  EXPECT_EQ(result.prompt_tokens, static_cast<int64_t>(conversation.size()));
  EXPECT_EQ(result.completion_tokens, 12);

  // After a reset nothing is reused.
  ASSERT_EQ(orchard_session_reset(s.get()), ORCHARD_OK);
  ASSERT_EQ(orchard_session_generate(s.get(), conversation.data(), conversation.size(), &o, nullptr, nullptr, &result),
            ORCHARD_OK);
  EXPECT_EQ(result.reused_tokens, 0);

  // The model handle may go before its session.
  m.reset();
  ASSERT_EQ(orchard_session_generate(s.get(), conversation.data(), conversation.size(), &o, nullptr, nullptr, &result),
            ORCHARD_OK)
      << orchard_last_error();
  EXPECT_EQ(result.completion_tokens, 12);
}

}  // namespace
}  // namespace orchard
