// The `orchard info` and `orchard logits` commands as a user runs them.
#include <gtest/gtest.h>

#include "cli/cli_test_support.h"
#include "golden.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

using test::expect_one_line_error;
using test::run_cli;

TEST(CliModel, InfoDescribesAModel) {
  const auto r = run_cli({"info", "--model", test::shared_path("golden/qwen3-q8_0.gguf")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("qwen3"), std::string::npos);
  EXPECT_NE(r.out.find("head_dim 96"), std::string::npos);
  EXPECT_NE(r.out.find("Q8_0"), std::string::npos);
  EXPECT_NE(r.out.find("file size"), std::string::npos);
}

TEST(CliModel, LogitsFileHasTheReferenceValues) {
  test::TempDir dir;
  const std::string out = dir.file("logits.f32");
  const auto r = run_cli({"logits", "--model", test::shared_path("golden/llama-q5_k_m.gguf"), "--tokens",
                          "964,638,698,916,590,791,851,229", "--out", out, "--kernels", "reference"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty());
  const auto logits = test::read_f32_file(out);
  const auto reference = test::read_f32_file(test::shared_path("golden/llama-q5_k_m.short.ref.f32"));
  EXPECT_LE(test::mean_kl_divergence(reference, logits, 1024), 1e-8);
}

TEST(CliModel, BadInputGivesExitCode2AndOneLine) {
  test::TempDir dir;
  const std::string out = dir.file("logits.f32");
  const std::string model = test::shared_path("golden/qwen2-q4_0.gguf");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "1,2,1024", "--out", out}),
                        "token id 1024");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "1,x", "--out", out}), "--tokens");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "-1", "--out", out}), "token id -1");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "1", "--out", out, "--kv-type", "q4"}),
                        "--kv-type");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "1", "--out", out, "--kernels", "gpu"}),
                        "--kernels");
  expect_one_line_error(run_cli({"logits", "--model", dir.file("missing.gguf"), "--tokens", "1", "--out", out}),
                        "missing.gguf");
  expect_one_line_error(run_cli({"logits", "--model", model, "--tokens", "1"}), "--out");
  expect_one_line_error(run_cli({"info", "--model", model, "--bogus", "1"}), "--bogus");
  const std::string truncated = dir.write("truncated.gguf", [&] {
    auto bytes = test::read_bytes(model);
    bytes.resize(bytes.size() / 3);
    return bytes;
  }());
  expect_one_line_error(run_cli({"info", "--model", truncated}), "truncated.gguf");
  expect_one_line_error(
      run_cli({"info", "--model", test::shared_path("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf")}),
      "vocab-only");
  EXPECT_FALSE(std::filesystem::exists(out)) << "a failed run left an output file";
}

}  // namespace
}  // namespace orchard
