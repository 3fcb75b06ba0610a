// --memory-budget as a user gives it: logits unchanged while streaming, figures in --verbose and
// bench --json, and one-line errors for bad sizes.
#include <gtest/gtest.h>

#include "cli/cli_test_support.h"
#include "golden.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

using test::run_cli;

TEST(CliFlash, LogitsUnderABudgetEqualTheMappedOnes) {
  test::TempDir dir;
  const std::string model = test::shared_path("golden/llama-q4_0.gguf");
  const std::vector<std::string> common = {"logits", "--model", model, "--tokens", "964,638,698,916", "--threads", "2"};
  auto mapped = common, streamed = common;
  // Limited-memory mode keeps two activation levels everywhere: so must the mapped model it equals.
  mapped.insert(mapped.end(), {"--out", dir.file("mapped.f32"), "--activations", "two"});
  streamed.insert(streamed.end(), {"--out", dir.file("streamed.f32"), "--memory-budget", "950K", "--verbose"});
  const auto a = run_cli(mapped), b = run_cli(streamed);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("flash: budget 0.9 MiB"), std::string::npos) << b.err;
  EXPECT_EQ(test::read_f32_file(dir.file("mapped.f32")), test::read_f32_file(dir.file("streamed.f32")));
}

TEST(CliFlash, BenchJsonReportsBytesPerToken) {
  const auto r = run_cli({"bench", "--model", test::shared_path("golden/llama-q4_0.gguf"), "-p", "4", "-n", "2",
                          "-r", "1", "-t", "2", "--memory-budget", "950K", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"flash_active\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"flash_bytes_read_per_token\": "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"flash_bytes_read_per_token\": 0,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"flash_io_wait_s\": "), std::string::npos) << r.out;
}

TEST(CliFlash, BadBudgetIsAOneLineError) {
  for (const std::string bad : {"lots", "0", "12X"}) {
    const auto r = run_cli({"bench", "--model", test::shared_path("golden/llama-q4_0.gguf"), "--memory-budget", bad});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
    EXPECT_NE(r.err.find("--memory-budget"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace orchard
