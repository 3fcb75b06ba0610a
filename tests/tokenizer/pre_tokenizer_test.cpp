// Word splits worked out by hand from the regexes' semantics (leftmost alternative, greedy
// quantifiers with backtracking, the \s+(?!\S) lookahead).
#include "tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace orchard {
namespace {

std::vector<std::string> words_of(std::string_view text, SplitPattern pattern) {
  std::vector<std::string_view> views;
  split_words(text, pattern, views);
  return {views.begin(), views.end()};
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, Llama3SplitsLikeItsRegex) {
  EXPECT_EQ(words_of("Hello world's  \n\n  test 12345", SplitPattern::kLlama3),
            (Words{"Hello", " world", "'s", "  \n\n", " ", " test", " ", "123", "45"}));
  EXPECT_EQ(words_of("I'M (ok)!!\n\nx", SplitPattern::kLlama3),
            (Words{"I", "'M", " (", "ok", ")!!\n\n", "x"}));
  EXPECT_EQ(words_of("\tfoo   ", SplitPattern::kLlama3), (Words{"\tfoo", "   "}));
  EXPECT_EQ(words_of("a\r\n \tb", SplitPattern::kLlama3), (Words{"a", "\r\n", " ", "\tb"}));
}

TEST(PreTokenizer, Qwen2TakesSingleDigits) {
  EXPECT_EQ(words_of("x 2024", SplitPattern::kQwen2), (Words{"x", " ", "2", "0", "2", "4"}));
  EXPECT_EQ(words_of("x 2024", SplitPattern::kLlama3), (Words{"x", " ", "202", "4"}));
}

TEST(PreTokenizer, Gpt2SplitsLikeItsRegex) {
  EXPECT_EQ(words_of("Hello world's  \n\n  test 12345", SplitPattern::kGpt2),
            (Words{"Hello", " world", "'s", "  \n\n ", " test", " 12345"}));
  EXPECT_EQ(words_of("I'M", SplitPattern::kGpt2), (Words{"I", "'", "M"}));
  EXPECT_EQ(words_of("end.  ", SplitPattern::kGpt2), (Words{"end", ".", "  "}));
}

TEST(PreTokenizer, UsesUnicodeCategories) {
  // Cyrillic letters, an ideographic space (white space), Arabic-Indic digits (numbers).
  EXPECT_EQ(words_of("привет\u3000мир \u0661\u0662", SplitPattern::kGpt2),
            (Words{"привет", "\u3000", "мир", " \u0661\u0662"}));
}

TEST(PreTokenizer, WordsCoverInvalidUtf8) {
  const std::string text = "ab\xff\xfe c\xc3";
  const auto words = words_of(text, SplitPattern::kLlama3);
  std::string joined;
  for (const auto& w : words) joined += w;
  EXPECT_EQ(joined, text);
}

TEST(PreTokenizer, RecognizesRegexSources) {
  EXPECT_EQ(split_pattern_from_regex(
                R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"),
            SplitPattern::kGpt2);
  EXPECT_FALSE(split_pattern_from_regex(R"(\w+)").has_value());
}

}  // namespace
}  // namespace orchard
