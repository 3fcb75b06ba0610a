// Minimal `--name value` / `--flag` parser. Unknown or missing options are orchard::Error
// (exit code 2) naming the option.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace orchard::cli {

class Args {
 public:
  // `argv` holds the words after the subcommand name. `flags` lists the options that take no
  // value; every other `--name` takes the next word as its value.
  Args(std::string command, std::vector<std::string> argv, std::set<std::string> flags = {});

  const std::string& command() const { return command_; }
  // The option's value; an option given twice is an error here (see get_all).
  std::optional<std::string> get(const std::string& name);
  // Every value of a repeatable option (--lora A --lora B), in order; empty when absent.
  std::vector<std::string> get_all(const std::string& name);
  std::string require(const std::string& name);
  std::string get_or(const std::string& name, const std::string& fallback);
  bool flag(const std::string& name);
  std::optional<int64_t> get_int(const std::string& name);
  std::optional<double> get_double(const std::string& name);
  // Throws if an option was given that the subcommand never asked for.
  void finish() const;

 private:
  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;  // every value, in order
  std::set<std::string> present_flags_;
  std::set<std::string> consumed_;
};

}  // namespace orchard::cli
