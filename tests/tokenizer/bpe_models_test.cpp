// The two BPE algorithms on toy vocabularies whose results are worked out by hand, including
// words long enough to take the heap-based paths.
#include <gtest/gtest.h>

#include "tokenizer/bpe_model.h"
#include "tokenizer/spm_model.h"

namespace orchard {
namespace {

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

Vocab toy_vocab() {
  Vocab vocab;
  int32_t id = 0;
  for (const char* text : {"a", "b", "ab", "abab", "aa", "<0x21>"}) vocab.set(id++, text);
  return vocab;
}

TEST(BpeModel, MergesByRankLeftmostFirst) {
  const Vocab vocab = toy_vocab();
  // Ranks: a+b, then ab+ab, then a+a.
  const BpeModel model(vocab, {{0, 1, 2}, {2, 2, 3}, {0, 0, 4}}, BpeOptions{});
  for (int n : {3, 40}) {  // short and long (heap) words
    std::vector<int32_t> ids;
    model.encode_word(repeat("ab", 2 * n) + "a", ids);
    std::vector<int32_t> want(size_t(n), 3);
    want.push_back(0);
    EXPECT_EQ(ids, want) << n;
    ids.clear();
    model.encode_word(repeat("a", 2 * n + 1), ids);  // pairs from the left, one "a" left over
    want.assign(size_t(n), 4);
    want.push_back(0);
    EXPECT_EQ(ids, want) << n;
  }
}

TEST(BpeModel, FallsBackToBytesOrUnknown) {
  const Vocab vocab = toy_vocab();
  BpeOptions options;
  options.byte_fallback = true;
  options.unknown_id = 1;
  options.fuse_unknown = true;
  const BpeModel model(vocab, {{0, 1, 2}}, options);
  std::vector<int32_t> ids;
  model.encode_word("a!zzab", ids);  // '!' has a byte token, 'z' has none: one fused unknown
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 5, 1, 2}));
}

TEST(SpmModel, MergesByScoreLeftmostFirst) {
  const Vocab vocab = toy_vocab();
  // Scores: abab beats ab beats aa.
  const SpmModel model(vocab, {0, 0, 2, 3, 1, 0}, std::nullopt);
  for (int n : {3, 40}) {
    std::vector<int32_t> ids;
    model.encode_word(repeat("ab", 2 * n), ids);
    EXPECT_EQ(ids, std::vector<int32_t>(size_t(n), 3)) << n;
    ids.clear();
    model.encode_word(repeat("a", 2 * n + 1), ids);
    std::vector<int32_t> want(size_t(n), 4);
    want.push_back(0);
    EXPECT_EQ(ids, want) << n;
  }
  std::vector<int32_t> ids;
  model.encode_word("a!", ids);  // '!' is no token: its byte token
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 5}));
}

}  // namespace
}  // namespace orchard
