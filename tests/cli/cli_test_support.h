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

}  // namespace orchard::test
