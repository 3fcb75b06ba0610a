// ChatService in process, without a socket: a prompt beyond the context is the OpenAI client
// error the integration test expects (400, the prompt's field as param, context_length_exceeded),
// and forced tool calls are constrained by the one tool-call schema builder.
#include "server/chat_service.h"

#include <gtest/gtest.h>

#include <string>

#include "orchard/engine.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

constexpr int64_t kContext = 24;

struct Loaded {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
};

const Loaded& tiny_chat() {
  static const Loaded loaded = [] {
    auto model = Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"),
                             {.kernels = KernelChoice::reference});
    return Loaded{model, load_model_tokenizer(*model)};
  }();
  return loaded;
}

ChatService& service() {
  static ChatService s(tiny_chat().tokenizer, "tiny", kContext);
  return s;
}

ChatRequest chat(const std::string& content) {
  return parse_chat_request(json::parse(R"({"messages": [{"role": "user", "content": ""}]})").
                            patch(json::array({{{"op", "replace"}, {"path", "/messages/0/content"}, {"value", content}}})));
}

RequestError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const RequestError& e) {
    return e;
  }
  ADD_FAILURE() << "no RequestError";
  return RequestError(0, "");
}

TEST(ChatService, PromptBeyondTheContextIsA400NamingTheField) {
  CompletionRequest completion;
  completion.prompt = std::string(400, 'x');
  const RequestError c = error_of([&] { service().prepare(completion); });
  EXPECT_EQ(c.status, 400);
  EXPECT_EQ(c.param, "prompt");
  EXPECT_EQ(c.code, "context_length_exceeded");
  EXPECT_EQ(std::string(c.what()).rfind("the prompt has ", 0), 0u) << c.what();
  EXPECT_NE(std::string(c.what()).find("; the context holds " + std::to_string(kContext)), std::string::npos) << c.what();

  const RequestError m = error_of([&] { service().prepare(chat(std::string(400, 'x'))); });
  EXPECT_EQ(m.status, 400);
  EXPECT_EQ(m.param, "messages");
  EXPECT_EQ(m.code, "context_length_exceeded");
}

TEST(ChatService, APromptThatFitsLeavesTheRestOfTheContextToTheCompletion) {
  CompletionRequest completion;
  completion.prompt = "Hi";
  const PreparedJob job = service().prepare(completion);
  ASSERT_FALSE(job.prompt.empty());
  EXPECT_EQ(job.options.max_tokens, kContext - static_cast<int64_t>(job.prompt.size()));
  // One token short of the context still fits: one position is left to generate.
  completion.prompt.clear();
  while (static_cast<int64_t>(service().tokenizer().encode(completion.prompt, service().tokenizer().adds_bos()).size()) <
         kContext - 1)
    completion.prompt += " x";
  ASSERT_EQ(static_cast<int64_t>(service().prepare(completion).prompt.size()), kContext - 1);
  EXPECT_EQ(service().prepare(completion).options.max_tokens, 1);
  completion.prompt += " x";
  EXPECT_EQ(error_of([&] { service().prepare(completion); }).code, "context_length_exceeded");
}

TEST(ChatService, ForcedToolCallIsConstrainedEvenForAFunctionWithoutParameters) {
  ChatRequest r = parse_chat_request(json::parse(R"({
    "messages": [{"role": "user", "content": "t?"}],
    "tools": [{"type": "function", "function": {"name": "now"}}],
    "tool_choice": "required"})"));
  // The tiny model's template renders the tools into the prompt: give it room.
  ChatService roomy(tiny_chat().tokenizer, "tiny", 4096);
  const PreparedJob job = roomy.prepare(r);
  EXPECT_TRUE(job.tools_enabled);
  ASSERT_NE(job.options.constraint, nullptr);
  auto* constraint = dynamic_cast<JsonSchemaConstraint*>(job.options.constraint.get());
  ASSERT_NE(constraint, nullptr);
  EXPECT_TRUE(constraint->accept_bytes("<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_TRUE(constraint->complete());
}

}  // namespace
}  // namespace orchard::server
