// `orchard quantize`, `orchard kld` and `orchard perplexity` as a user runs them.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/cli_test_support.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

using test::expect_one_line_error;
using test::run_cli;

const std::string kQwen = test::shared_path("golden/qwen2-f32.gguf");
const std::string kStories = test::shared_path("models/stories260K/stories260K.gguf");

TEST(CliQuantize, QuantizesAndMeasures) {
  test::TempDir dir;
  const std::string out = dir.file("q.gguf");
  const auto q = run_cli({"quantize", "--model", kQwen, "--out", out, "--type", "q4_os"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.err.find("bits per weight"), std::string::npos) << q.err;
  const auto k = run_cli({"kld", "--base", kQwen, "--model", out, "--sequences", "2", "--seq-len", "16", "--seed", "3",
                          "--kernels", "reference"});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  EXPECT_NE(k.out.find("mean KL"), std::string::npos) << k.out;
  EXPECT_NE(k.out.find("2 x 16 tokens"), std::string::npos) << k.out;
  // A model against itself: zero divergence, full agreement.
  const auto same = run_cli({"kld", "--base", out, "--model", out, "--tokens-random", "1", "--seq-len", "8"});
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_NE(same.out.find("mean KL:         0 "), std::string::npos) << same.out;
  EXPECT_NE(same.out.find("100.00%"), std::string::npos) << same.out;
}

TEST(CliQuantize, CalibratesOnTextAndScoresPerplexity) {
  test::TempDir dir;
  const std::string text = dir.write("text.txt", "Once upon a time, there was a little girl named Lily. She liked to play in the park with her dog. "
                                                 "One day, Lily and her dog found a big red ball under a tree.");
  const std::string out = dir.file("s.gguf");
  const auto q = run_cli({"quantize", "--model", kStories, "--out", out, "--type", "q4_om", "--calibration", text});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.err.find("calibration:"), std::string::npos) << q.err;
  const auto p = run_cli({"perplexity", "--model", out, "--text-file", text, "--seq-len", "16"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.out.find("perplexity:"), std::string::npos) << p.out;
}

TEST(CliQuantize, BadInputIsAOneLineError) {
  test::TempDir dir;
  expect_one_line_error(run_cli({"quantize", "--model", kQwen, "--out", dir.file("x.gguf"), "--type", "q3_xs"}), "q4_os");
  expect_one_line_error(run_cli({"quantize", "--model", dir.file("missing.gguf"), "--out", dir.file("x.gguf"), "--type", "q8_0"}),
                        "missing.gguf");
  expect_one_line_error(run_cli({"quantize", "--model", kQwen, "--out", dir.path(), "--type", "q8_0"}), "--out");
  expect_one_line_error(run_cli({"quantize", "--model", kQwen, "--out", dir.file("x.gguf")}), "--type");
  const std::string ids = dir.write("ids.txt", "1 2 99999");
  expect_one_line_error(run_cli({"quantize", "--model", kQwen, "--out", dir.file("x.gguf"), "--type", "q8_0",
                                 "--calibration-tokens-file", ids}), "99999");
  const std::string junk = dir.write("junk.txt", "1 2 three");
  expect_one_line_error(run_cli({"quantize", "--model", kQwen, "--out", dir.file("x.gguf"), "--type", "q8_0",
                                 "--calibration-tokens-file", junk}), "junk.txt");
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
  expect_one_line_error(run_cli({"kld", "--base", kQwen, "--model", kStories, "--sequences", "1"}), "vocabularies");
  expect_one_line_error(run_cli({"kld", "--base", kQwen, "--model", kQwen}), "--sequences");
  expect_one_line_error(run_cli({"kld", "--base", kQwen, "--model", kQwen, "--sequences", "0"}), "--sequences");
  expect_one_line_error(run_cli({"perplexity", "--model", kQwen, "--tokens-file", ids}), "fewer than one sequence");
}

}  // namespace
}  // namespace orchard
