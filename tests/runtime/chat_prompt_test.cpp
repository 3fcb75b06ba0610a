#include "runtime/chat_prompt.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "orchard/model.h"
#include "orchard/engine.h"
#include "test_paths.h"

namespace orchard {
namespace {

TEST(ChatPrompt, UsesTheModelsOwnChatTemplate) {
  auto model = Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  ASSERT_FALSE(tokenizer->chat_template().empty());
  // The Qwen chat format for one user turn with the generation prompt.
  EXPECT_EQ(render_user_prompt(*tokenizer, "Hi there"),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<int32_t> ids = chat_prompt_ids(*tokenizer, "Hi there");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 1022);  // <|im_start|> as one special token, no BOS before it
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1023), 1);  // one <|im_end|>
}

TEST(ChatPrompt, WithoutATemplateIsAPlainCompletionWithBos) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  EXPECT_TRUE(tokenizer->chat_template().empty());
  const std::vector<int32_t> ids = chat_prompt_ids(*tokenizer, "Once upon a time");
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));  // llama2.c's prompt ids
}

}  // namespace
}  // namespace orchard
