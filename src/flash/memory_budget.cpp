#include "flash/memory_budget.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "base/error.h"

namespace orchard {

uint64_t parse_memory_budget(const std::string& text) {
  const auto bad = [&](const char* why) -> uint64_t {
    fail("--memory-budget: '", text, "' ", why, " (expected a size such as 800M or 1.5G)");
  };
  size_t digits_end = 0;
  while (digits_end < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits_end])) || text[digits_end] == '.'))
    ++digits_end;
  const std::string number = text.substr(0, digits_end);
  if (number.empty() || number == "." || number.find('.') != number.rfind('.')) return bad("is not a size");
  std::string unit = text.substr(digits_end);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.size() == 3 && unit.substr(1) == "IB") unit.resize(1);
  else if (unit.size() == 2 && unit[1] == 'B') unit.resize(1);
  double scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024.0;
  else if (unit == "G") scale = 1024.0 * 1024.0 * 1024.0;
  else if (unit == "T") scale = 1024.0 * 1024.0 * 1024.0 * 1024.0;
  else return bad("has an unknown unit (use K, M, G or T)");
  const double bytes = std::strtod(number.c_str(), nullptr) * scale;
  if (!(bytes >= 1)) return bad("must be at least one byte");
  if (bytes >= 18446744073709551615.0) return bad("is too large");
  return static_cast<uint64_t>(std::floor(bytes));
}

}  // namespace orchard
