// Runs the built `orchard` binary and captures its exit code, stdout and stderr.
#pragma once
#include <cstdint>
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

// Like run_cli, with the child's address space limited to `address_space_mib` (setrlimit, as
// `ulimit -v` does) and killed by SIGALRM after `timeout_s` seconds: for inputs that would exhaust
// memory or block forever without the checks under test, so that such a test fails cleanly
// (exit 3, or 128 + SIGALRM = 142) instead of starving the machine or hanging.
CliResult run_cli_limited(const std::vector<std::string>& args, uint64_t address_space_mib, unsigned timeout_s);

// Bad input: exit code 2 and a single line on stderr that mentions `needle`.
void expect_one_line_error(const CliResult& result, const std::string& needle);

}  // namespace orchard::test
