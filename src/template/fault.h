// A runtime failure inside a template (a type error, an undefined value used, a bad filter
// argument). It carries no location: the interpreter catches it and rethrows an orchard::Error
// naming the template line it was executing.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>

#include "base/error.h"

namespace orchard::jinja {

class TemplateFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Parts>
[[noreturn]] void fault(Parts&&... parts) {
  throw TemplateFault(str_cat(std::forward<Parts>(parts)...));
}

}  // namespace orchard::jinja
