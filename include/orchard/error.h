// The one exception type Orchard throws for bad input: the message names the file, field or
// argument and what is wrong, on one line.
#pragma once
#include <stdexcept>
#include <string>

namespace orchard {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace orchard
