// The `orchard tokenize` / `orchard detokenize` subcommands, run as a user would.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "test_paths.h"

namespace orchard::test {
namespace {

struct CliResult {
  int exit_code;
  std::string output;
};

CliResult run_cli(const std::string& arguments) {
  const std::string command = cli_path() + " " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), output};
}

std::string temp_file(const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("orchard-cli-" + std::to_string(std::random_device{}()) + ".txt");
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

TEST(TokenizeCli, PrintsIdsAndTextBack) {
  const std::string qwen3 = shared_path("tokenizers/qwen3");
  const std::string text_file = temp_file("Hello world<|im_end|>\n");
  const CliResult tokens = run_cli("tokenize --tokenizer " + qwen3 + " --text-file " + text_file);
  EXPECT_EQ(tokens.exit_code, 0);
  // "Hello" 9707, " world" 1879, <|im_end|> 151645, "\n" 198 (Qwen2.5 vocab).
  EXPECT_EQ(tokens.output, "[9707, 1879, 151645, 198]\n");

  const std::string ids_file = temp_file(tokens.output);
  const CliResult text = run_cli("detokenize --tokenizer " + qwen3 + " --ids-file " + ids_file);
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.output, "Hello world<|im_end|>\n");
  EXPECT_EQ(run_cli("detokenize --tokenizer " + qwen3 + " --ids 9707,1879").output, "Hello world");
  // --model takes a model (here a llama2.c checkpoint needs its tokenizer, so it is refused).
  const CliResult no_tokenizer = run_cli("detokenize --model " + shared_path("models/stories260K/stories260K.bin") + " --ids 1");
  EXPECT_EQ(no_tokenizer.exit_code, 2);

  const CliResult gguf = run_cli("tokenize --model " + shared_path("models/stories260K/stories260K.gguf") +
                           " --text-file " + temp_file("Once upon a time"));
  EXPECT_EQ(gguf.output, "[403, 407, 261, 378]\n");  // expected_generation.json without BOS
  std::filesystem::remove(text_file);
  std::filesystem::remove(ids_file);
}

TEST(TokenizeCli, ReportsErrors) {
  const CliResult missing = run_cli("tokenize --tokenizer /nonexistent/tokenizer.json --text-file /dev/null");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("/nonexistent/tokenizer.json"), std::string::npos);
  const CliResult bad_ids = run_cli("detokenize --tokenizer " + shared_path("tokenizers/qwen3") + " --ids 1,x");
  EXPECT_EQ(bad_ids.exit_code, 2);
  EXPECT_NE(bad_ids.output.find("'x'"), std::string::npos);
}

}  // namespace
}  // namespace orchard::test
