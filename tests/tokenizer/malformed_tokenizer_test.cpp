// Broken tokenizer files give an orchard::Error that names the file and what is wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "orchard/error.h"
#include "orchard/tokenizer.h"

namespace orchard {
namespace {

class MalformedTokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("orchard-tokenizer-test-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    const auto path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  // Loads `json` as tokenizer.json and returns the error message (empty when it loads).
  std::string load_error(const std::string& json, bool names_tokenizer_json = true) {
    const std::string path = write("tokenizer.json", json);
    try {
      Tokenizer::load(path);
    } catch (const Error& e) {
      const std::string message = e.what();
      if (names_tokenizer_json) {
        EXPECT_NE(message.find(path), std::string::npos) << message;
      }
      return message;
    }
    return {};
  }

  std::filesystem::path dir_;
};

constexpr const char* kGoodModel =
    R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";

TEST_F(MalformedTokenizer, MinimalFileLoads) {
  EXPECT_EQ(load_error(std::string("{") + kGoodModel + "}"), "");
  const auto t = Tokenizer::load((dir_ / "tokenizer.json").string());
  EXPECT_EQ(t->encode("abba"), (std::vector<int32_t>{2, 1, 0}));
}

TEST_F(MalformedTokenizer, NamesTheProblem) {
  EXPECT_NE(load_error("{\"model\": ").find("invalid JSON"), std::string::npos);
  EXPECT_NE(load_error("[1, 2]").find("JSON object"), std::string::npos);
  EXPECT_NE(load_error("{}").find("\"model\""), std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "merges": []}})").find("\"vocab\""), std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})").find("merges"), std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})").find("integer"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})").find("out of range"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})")
                .find("model.merges[0]"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})")
                .find("missing from the vocabulary"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": [7]}})").find("model.merges[0]"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model": {"type": "Unigram", "vocab": []}})").find("Unigram"), std::string::npos);
  EXPECT_NE(load_error(std::string("{") + kGoodModel + R"(, "added_tokens": [{"id": 5}]})").find("added_tokens[0]"),
            std::string::npos);
  EXPECT_NE(load_error(std::string("{") + kGoodModel +
                       R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}})")
                .find("unsupported split regex"),
            std::string::npos);
  EXPECT_NE(load_error(std::string("{") + kGoodModel + R"(, "normalizer": {"type": "Lowercase"}})").find("Lowercase"),
            std::string::npos);
  EXPECT_NE(load_error(std::string("{") + kGoodModel + R"(, "decoder": {"type": 3}})").find("decoder.type"),
            std::string::npos);
}

TEST_F(MalformedTokenizer, BadConfigBesideIsReported) {
  write("tokenizer_config.json", "{not json");
  EXPECT_NE(load_error(std::string("{") + kGoodModel + "}", false).find((dir_ / "tokenizer_config.json").string()),
            std::string::npos);
}

TEST_F(MalformedTokenizer, OtherFormats) {
  const auto expect_error = [](const std::string& path, const std::string& needle) {
    try {
      Tokenizer::load(path);
      ADD_FAILURE() << path << " loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error((dir_ / "missing.json").string(), "missing.json");
  expect_error(dir_.string(), "no tokenizer.json");
  // A llama2.c tokenizer cut in the middle of a token.
  std::string bin(4, '\0');
  bin[0] = 8;
  bin += std::string("\0\0\0\0\x05\0\0\0ab", 10);
  expect_error(write("tok.bin", bin), "truncated");
  expect_error(write("random.bin", "\x7f\x13\x88\x01garbage"), "random.bin");
}

}  // namespace
}  // namespace orchard
