// The ids of real tokenizers against references made by other implementations: Hugging Face's
// (transformers.js) for tokenizer.json files, llama.cpp's own test vectors for GGUF vocabs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "tokenizer_test_data.h"

namespace orchard::test {
namespace {

std::string printable(const std::string& text) { return nlohmann::json(text).dump(); }

class ExpectedIds : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpectedIds, MatchesHuggingFace) {
  const std::string name = GetParam();
  const auto tokenizer = shared_tokenizer("tokenizers/" + name + "/tokenizer.json");
  const auto expected = nlohmann::json::parse(read_file(shared_path("tokenizers/expected_ids.json")));
  const auto& cases = expected.at("cases");
  ASSERT_EQ(cases.size(), 47u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at(name).get<std::vector<int32_t>>();
    const auto got = tokenizer->encode(text);
    EXPECT_EQ(got, want) << name << " " << printable(text);
    EXPECT_EQ(tokenizer->decode(got), text) << name << " " << printable(text);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ExpectedIds, ::testing::Values("qwen3", "llama3", "spm32k"));

struct VocabSource {
  std::string vectors;    // llama.cpp vector file name
  std::string tokenizer;  // what encodes them, under shared/
};

void PrintTo(const VocabSource& source, std::ostream* os) { *os << source.vectors; }

class LlamaCppVectors : public ::testing::TestWithParam<VocabSource> {};

TEST_P(LlamaCppVectors, MatchLlamaCpp) {
  const VocabSource& source = GetParam();
  const auto tokenizer = shared_tokenizer(source.tokenizer);
  const auto cases = llama_cpp_vocab_cases(source.vectors);
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    const auto got = tokenizer->encode(c.text);
    EXPECT_EQ(got, c.ids) << source.vectors << " " << printable(c.text);
    EXPECT_EQ(tokenizer->decode(got), c.text) << source.vectors << " " << printable(c.text);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Vocabs, LlamaCppVectors,
    ::testing::Values(VocabSource{"llama-spm", "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"},
                      VocabSource{"phi-3", "tokenizers/llama.cpp-vocab/ggml-vocab-phi-3.gguf"},
                      VocabSource{"gpt-2", "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"},
                      VocabSource{"qwen2", "tokenizers/qwen3/tokenizer.json"},
                      VocabSource{"llama-bpe", "tokenizers/llama3/tokenizer.json"}),
    [](const auto& info) {
      std::string name = info.param.vectors;
      for (char& c : name) if (c == '-') c = '_';
      return name;
    });

// stories260K: llama2.c's run.c and the GGUF vocabulary give the same prompt ids (with BOS).
class StoriesPrompt : public ::testing::TestWithParam<std::string> {};

TEST_P(StoriesPrompt, MatchesLlama2c) {
  const auto tokenizer = shared_tokenizer(GetParam());
  const auto expected =
      nlohmann::json::parse(read_file(shared_path("models/stories260K/expected_generation.json")));
  for (const auto& c : expected.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const auto want = c.at("prompt_tokens").get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer->encode(prompt, /*add_bos=*/true), want) << printable(prompt);
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(prompt), true), prompt);
  }
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_TRUE(tokenizer->adds_bos());
}

INSTANTIATE_TEST_SUITE_P(Stories, StoriesPrompt,
                         ::testing::Values("models/stories260K/tok512.bin",
                                           "models/stories260K/stories260K.gguf"),
                         [](const auto& info) {
                           return std::string(info.param.ends_with(".bin") ? "llama2c_bin" : "gguf");
                         });

}  // namespace
}  // namespace orchard::test
