// Runs the built `orchard` binary and captures its exit code, stdout and stderr.
#pragma once
#include <string>
#include <vector>

namespace orchard::test {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `orchard <args...>` (no shell), optionally feeding `stdin_text`.
CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "");

// Bad input: exit code 2 and a single line on stderr that mentions `needle`.
void expect_one_line_error(const CliResult& result, const std::string& needle);

}  // namespace orchard::test
