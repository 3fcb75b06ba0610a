#include "cli/cli_test_support.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "temp_dir.h"
#include "test_paths.h"

namespace orchard::test {

namespace {

CliResult run(const std::vector<std::string>& args, const std::string& stdin_text, uint64_t address_space_mib,
              unsigned timeout_s) {
  TempDir dir;
  const std::string in_path = dir.write("stdin", stdin_text);
  const std::string out_path = dir.file("stdout"), err_path = dir.file("stderr");
  const std::string binary = cli_path();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int in = open(in_path.c_str(), O_RDONLY);
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (address_space_mib > 0) {
#ifdef __SANITIZE_ADDRESS__
      // AddressSanitizer reserves terabytes of address space for its shadow memory: an
      // address-space limit stops the CLI from starting, so the bound is ASan's RSS limit.
      const char* options = getenv("ASAN_OPTIONS");
      const std::string bounded = std::string(options ? options : "") + ":hard_rss_limit_mb=" + std::to_string(address_space_mib);
      setenv("ASAN_OPTIONS", bounded.c_str(), 1);
#else
      const rlimit limit{address_space_mib << 20, address_space_mib << 20};
      setrlimit(RLIMIT_AS, &limit);
#endif
    }
    if (timeout_s > 0) alarm(timeout_s);  // pending alarms survive execv
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CliResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(out_path);
  result.err = read_text(err_path);
  return result;
}

}  // namespace

CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text) {
  return run(args, stdin_text, 0, 0);
}

CliResult run_cli_limited(const std::vector<std::string>& args, uint64_t address_space_mib, unsigned timeout_s) {
  return run(args, "", address_space_mib, timeout_s);
}

void expect_one_line_error(const CliResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

}  // namespace orchard::test
