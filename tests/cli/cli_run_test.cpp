// `orchard run` against llama2.c's own greedy generations of stories260K.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/cli_test_support.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct ModelFiles {
  std::string label;
  std::vector<std::string> args;
};

TEST(CliRun, Stories260KGreedyMatchesLlama2c) {
  const auto expected = nlohmann::json::parse(
      test::read_text(test::shared_path("models/stories260K/expected_generation.json")));
  const std::string dir = test::source_path("models/stories260K/");
  const std::vector<ModelFiles> models = {
      {"gguf", {"--model", dir + "stories260K.gguf"}},
      {"llama2.c", {"--model", dir + "stories260K.bin", "--tokenizer", dir + "tok512.bin"}},
  };
  ASSERT_EQ(expected["cases"].size(), 4u);
  for (const auto& c : expected["cases"]) {
    for (const ModelFiles& m : models) {
      std::vector<std::string> args = {"run"};
      args.insert(args.end(), m.args.begin(), m.args.end());
      const std::vector<std::string> rest = {"--prompt", c["prompt"].get<std::string>(), "--raw", "--temperature", "0",
                                             "--max-tokens", std::to_string(c["generated_tokens"].get<int>())};
      args.insert(args.end(), rest.begin(), rest.end());
      const auto r = test::run_cli(args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      std::string out = r.out;
      if (!out.empty() && out.back() == '\n') out.pop_back();  // the one final newline allowed
      EXPECT_EQ(out, c["expected_continuation"].get<std::string>()) << m.label << ": " << c["prompt"];
    }
  }
}

TEST(CliRun, SameSeedSameTextAndBadOptionsAreRefused) {
  const std::string model = test::source_path("models/stories260K/stories260K.gguf");
  const std::vector<std::string> args = {"run", "--model", model, "--prompt", "The cat", "--raw",
                                         "--temperature", "1.0", "--seed", "17", "--max-tokens", "30"};
  const auto a = test::run_cli(args), b = test::run_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_GT(a.out.size(), 10u);
  auto other = args;
  other[8] = "18";
  EXPECT_NE(test::run_cli(other).out, a.out);

  const auto bad = test::run_cli({"run", "--model", model, "--prompt", "x", "--top-p", "0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(bad.out.empty());
  const auto no_tokenizer = test::run_cli({"run", "--model", test::source_path("models/stories260K/stories260K.bin"),
                                           "--prompt", "x", "--raw"});
  EXPECT_EQ(no_tokenizer.exit_code, 2);
  EXPECT_NE(no_tokenizer.err.find("--tokenizer"), std::string::npos) << no_tokenizer.err;
}

}  // namespace
}  // namespace orchard
