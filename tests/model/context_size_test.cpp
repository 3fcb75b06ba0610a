// The context-size rule ("0: the model's trained context length, capped at 4096") that Context
// and the engine share, and that Context really follows it.
#include <gtest/gtest.h>

#include <string>

#include "model/context_size.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "test_paths.h"

namespace orchard {
namespace {

ModelConfig trained_for(int64_t context_length) {
  ModelConfig c;
  c.context_length = context_length;
  return c;
}

TEST(ContextSize, DefaultIsTheTrainedLengthCappedAt4096) {
  EXPECT_EQ(default_context_size(trained_for(256)), 256);
  EXPECT_EQ(default_context_size(trained_for(4096)), 4096);
  EXPECT_EQ(default_context_size(trained_for(4097)), 4096);
  EXPECT_EQ(default_context_size(trained_for(131072)), 4096);
}

TEST(ContextSize, ZeroMeansTheDefaultAPositiveSizeIsKeptANegativeOneIsRefused) {
  const ModelConfig c = trained_for(32768);
  EXPECT_EQ(resolve_context_size(c, 0), 4096);
  EXPECT_EQ(resolve_context_size(c, 1), 1);
  // Beyond the trained length on request: the caller asked for it (bounds are checked later).
  EXPECT_EQ(resolve_context_size(c, 65536), 65536);
  try {
    resolve_context_size(c, -3);
    FAIL() << "a negative size was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--ctx-size: a context of -3 tokens is not possible (give a positive size, or 0 for the model's)");
  }
}

TEST(ContextSize, ContextFollowsTheRule) {
  const auto model = Model::load(test::shared_path("golden/llama-q4_0.gguf"), {.kernels = KernelChoice::reference});
  const int64_t trained = model->config().context_length;
  EXPECT_EQ(Context(model, {.n_ctx = 0, .kernels = KernelChoice::reference}).n_ctx(), std::min<int64_t>(trained, 4096));
  EXPECT_EQ(Context(model, {.n_ctx = 5, .kernels = KernelChoice::reference}).n_ctx(), 5);
  EXPECT_THROW(Context(model, {.n_ctx = -1, .kernels = KernelChoice::reference}), Error);
}

}  // namespace
}  // namespace orchard
