#include "orchard/engine.h"

#include <gtest/gtest.h>

#include "test_paths.h"

namespace orchard {
namespace {

StreamOptions greedy(int64_t max_tokens) {
  StreamOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  return o;
}

TEST(Session, FollowUpTurnPrefillsOnlyItsNewTokensAndMatchesAFreshContext) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Session session(model, tokenizer, {.n_ctx = 256, .kernels = KernelChoice::reference});
  const std::vector<int32_t> first = tokenizer->encode("Once upon a time", true);
  std::string first_text;
  const GenerateResult r1 = session.reply(first, greedy(20), [&](std::string_view t) { first_text += t; return true; });
  ASSERT_EQ(r1.tokens.size(), 20u);
  EXPECT_EQ(session.last_reused_tokens(), 0);

  std::vector<int32_t> second = first;
  second.insert(second.end(), r1.tokens.begin(), r1.tokens.end());
  const std::vector<int32_t> follow_up = tokenizer->encode(" The dog said", false);
  second.insert(second.end(), follow_up.begin(), follow_up.end());
  std::string second_text;
  session.reply(second, greedy(15), [&](std::string_view t) { second_text += t; return true; });
  // Everything evaluated in turn one (all but its last sampled token) came from the cache.
  EXPECT_EQ(session.last_reused_tokens(), static_cast<int64_t>(first.size() + r1.tokens.size() - 1));

  Session fresh(model, tokenizer, {.n_ctx = 256, .kernels = KernelChoice::reference});
  std::string fresh_text;
  fresh.reply(second, greedy(15), [&](std::string_view t) { fresh_text += t; return true; });
  EXPECT_EQ(fresh.last_reused_tokens(), 0);
  EXPECT_EQ(second_text, fresh_text);
  EXPECT_FALSE(second_text.empty());

  // A reset right after a reply (the slot may not be free yet) forgets everything.
  session.reset();
  session.reply(second, greedy(1), [](std::string_view) { return true; });
  EXPECT_EQ(session.last_reused_tokens(), 0);
}

// The private node's engine: a job reuses nothing of the one before (its cache is zeroed when it
// ends), and the text is the same as with a cache of its own.
TEST(Session, WithoutPrefixSharingAFollowUpPrefillsEverythingAndAnswersTheSame) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Session session(model, tokenizer, {.n_ctx = 256, .kernels = KernelChoice::reference, .share_prefix = false});
  const std::vector<int32_t> prompt = tokenizer->encode("Once upon a time", true);
  std::string first, second;
  session.reply(prompt, greedy(20), [&](std::string_view t) { first += t; return true; });
  session.reply(prompt, greedy(20), [&](std::string_view t) { second += t; return true; });
  EXPECT_EQ(session.last_reused_tokens(), 0);
  EXPECT_EQ(first, second);
  EXPECT_FALSE(first.empty());
  Session sharing(model, tokenizer, {.n_ctx = 256, .kernels = KernelChoice::reference});
  sharing.reply(prompt, greedy(20), [](std::string_view) { return true; });
  sharing.reply(prompt, greedy(20), [](std::string_view) { return true; });
  EXPECT_GT(sharing.last_reused_tokens(), 0);  // the same calls do reuse where sharing is on
}

TEST(Session, CancelStopsGenerationAndStopStringsCutTheText) {
  auto model = Model::load(test::source_path("models/stories260K/stories260K.gguf"));
  auto tokenizer = load_model_tokenizer(*model);
  Session session(model, tokenizer, {.n_ctx = 256});
  const std::vector<int32_t> prompt = tokenizer->encode("Once upon a time", true);
  std::atomic<bool> cancel{false};
  int pieces = 0;
  const GenerateResult r = session.reply(prompt, greedy(100), [&](std::string_view) {
    if (++pieces == 3) cancel = true;
    return true;
  }, &cancel);
  EXPECT_EQ(r.stop, StopReason::cancelled);
  EXPECT_LE(r.tokens.size(), 4u);

  StreamOptions stop = greedy(100);
  stop.stop = {"Lily"};  // greedy text: ", there was a little girl named Lily. ..."
  std::string text;
  const GenerateResult s = session.reply(prompt, stop, [&](std::string_view t) { text += t; return true; });
  EXPECT_EQ(s.stop, StopReason::stop_string);
  EXPECT_EQ(text, ", there was a little girl named ");
}

}  // namespace
}  // namespace orchard
