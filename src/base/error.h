// Errors: every failure caused by bad input is an orchard::Error whose message names the file,
// field or argument and what is wrong. The CLI prints it on one line and exits with code 2.
#pragma once
#include <sstream>
#include <string>
#include <utility>

#include "orchard/error.h"

namespace orchard {

// Joins its arguments with operator<< into one string.
template <typename... Parts>
std::string str_cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(str_cat(std::forward<Parts>(parts)...));
}

}  // namespace orchard
