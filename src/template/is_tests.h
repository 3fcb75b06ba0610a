// jinja2's tests (`x is defined`, `x is not none`, `x is string` ...).
#pragma once
#include <string>

#include "template/callable.h"
#include "template/value.h"

namespace orchard::jinja {

using TestFunction = bool (*)(Interpreter& interpreter, const Value& input, const CallArgs& args);

// Null when there is no test by that name.
TestFunction find_test(const std::string& name);

}  // namespace orchard::jinja
