#include "args.h"

#include <cerrno>
#include <cstdlib>

#include "base/error.h"

namespace orchard::cli {

Args::Args(std::string command, std::vector<std::string> argv, std::set<std::string> flags)
    : command_(std::move(command)) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    // "-p" is short for "--p" (llama-bench style single-letter options).
    const bool short_option = word.size() == 2 && word[0] == '-' && word[1] != '-';
    if (!short_option && (word.size() < 3 || word.rfind("--", 0) != 0))
      fail("orchard ", command_, ": unexpected argument '", word, "' (options look like --name)");
    std::string name = word.substr(short_option ? 1 : 2);
    std::string value;
    bool has_inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    if (flags.count(name)) {
      if (has_inline_value) fail("orchard ", command_, ": --", name, " takes no value");
      present_flags_.insert(name);
      continue;
    }
    if (!has_inline_value) {
      if (i + 1 >= argv.size()) fail("orchard ", command_, ": --", name, " needs a value");
      value = argv[++i];
    }
    values_[name].push_back(value);
  }
}

std::optional<std::string> Args::get(const std::string& name) {
  consumed_.insert(name);
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  if (it->second.size() > 1) fail("orchard ", command_, ": --", name, " given twice");
  return it->second.front();
}

std::vector<std::string> Args::get_all(const std::string& name) {
  consumed_.insert(name);
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::require(const std::string& name) {
  auto v = get(name);
  if (!v) fail("orchard ", command_, ": missing required option --", name);
  return *v;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) {
  auto v = get(name);
  return v ? *v : fallback;
}

bool Args::flag(const std::string& name) {
  consumed_.insert(name);
  return present_flags_.count(name) > 0;
}

std::optional<int64_t> Args::get_int(const std::string& name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long parsed = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    fail("orchard ", command_, ": --", name, " expects an integer, got '", *v, "'");
  return parsed;
}

std::optional<double> Args::get_double(const std::string& name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double parsed = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    fail("orchard ", command_, ": --", name, " expects a number, got '", *v, "'");
  return parsed;
}

void Args::finish() const {
  for (const auto& [name, value] : values_)
    if (!consumed_.count(name)) fail("orchard ", command_, ": unknown option --", name);
  for (const auto& name : present_flags_)
    if (!consumed_.count(name)) fail("orchard ", command_, ": unknown option --", name);
}

}  // namespace orchard::cli
