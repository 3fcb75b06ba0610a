// Several sequences advanced in one forward pass give the logits each gets alone.
#include <gtest/gtest.h>

#include "golden.h"
#include "model/transformer.h"
#include "orchard/model.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::vector<float> alone(const Model& model, const Kernels& kernels, const std::vector<std::vector<int32_t>>& steps) {
  Transformer t(model.impl(), kernels, 64, 2);
  const int64_t n_vocab = model.config().n_vocab;
  std::vector<float> all;
  int64_t pos = 0;
  for (const auto& tokens : steps) {
    std::vector<float> logits(tokens.size() * n_vocab);
    t.forward(tokens, pos, true, logits.data());
    pos += static_cast<int64_t>(tokens.size());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

void check(KernelChoice choice, const Kernels& kernels, double tolerance) {
  auto model = Model::load(test::shared_path("golden/qwen2-q8_0.gguf"), {.kernels = choice});
  const int64_t n_vocab = model->config().n_vocab;
  const std::vector<std::vector<int32_t>> prompts = {{5, 17, 300, 999, 12, 7, 64, 1000}, {3, 3, 900, 41, 2}, {700}};
  const std::vector<int32_t> next = {11, 600, 1020};

  Transformer batched(model->impl(), kernels, 64, 2, 3);
  std::vector<SequenceTokens> prefill;
  for (size_t s = 0; s < prompts.size(); ++s) prefill.push_back({static_cast<int64_t>(s), 0, prompts[s], true});
  std::vector<float> prefill_logits((8 + 5 + 1) * n_vocab);
  batched.forward(prefill, prefill_logits.data());
  // One decode step for all three, last-token logits only.
  std::vector<SequenceTokens> decode;
  for (size_t s = 0; s < prompts.size(); ++s)
    decode.push_back({static_cast<int64_t>(s), static_cast<int64_t>(prompts[s].size()),
                      std::span<const int32_t>(&next[s], 1), false});
  std::vector<float> decode_logits(3 * n_vocab);
  batched.forward(decode, decode_logits.data());

  size_t offset = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const std::vector<float> expected = alone(*model, kernels, {prompts[s], {next[s]}});
    const size_t rows = prompts[s].size();
    std::vector<float> got(prefill_logits.begin() + offset * n_vocab, prefill_logits.begin() + (offset + rows) * n_vocab);
    got.insert(got.end(), decode_logits.begin() + s * n_vocab, decode_logits.begin() + (s + 1) * n_vocab);
    offset += rows;
    ASSERT_EQ(got.size(), expected.size());
    if (tolerance == 0) EXPECT_EQ(got, expected) << "sequence " << s;
    else EXPECT_LE(test::mean_kl_divergence(expected, got, n_vocab), tolerance) << "sequence " << s;
  }
}

TEST(BatchedSequences, ReferenceKernelsGiveIdenticalLogits) {
  check(KernelChoice::reference, reference_kernels(), 0.0);
}

// The fast kernels are batch-invariant too (tests/model/batch_invariance_test.cpp): bitwise.
TEST(BatchedSequences, FastKernelsGiveIdenticalLogits) {
  check(KernelChoice::fast, select_kernels(KernelChoice::fast), 0.0);
}

TEST(BatchedSequences, RefusesEntriesOutsideTheirCache) {
  auto model = Model::load(test::shared_path("golden/qwen2-q8_0.gguf"), {.kernels = KernelChoice::reference});
  Transformer t(model->impl(), reference_kernels(), 8, 1, 2);
  const std::vector<int32_t> tokens = {1, 2, 3};
  std::vector<float> logits(3 * model->config().n_vocab);
  const SequenceTokens wrong_sequence{2, 0, tokens, false};
  EXPECT_ANY_THROW(t.forward(std::span<const SequenceTokens>(&wrong_sequence, 1), logits.data()));
  const SequenceTokens past_end{1, 6, tokens, false};
  EXPECT_ANY_THROW(t.forward(std::span<const SequenceTokens>(&past_end, 1), logits.data()));
}

}  // namespace
}  // namespace orchard
