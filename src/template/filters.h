// The jinja2 filters chat templates use (`x | name(args)`), with transformers' tojson.
#pragma once
#include <string>

#include "template/callable.h"
#include "template/value.h"

namespace orchard::jinja {

using FilterFunction = Value (*)(Interpreter& interpreter, const Value& input, const CallArgs& args);

// Null when there is no filter by that name.
FilterFunction find_filter(const std::string& name);

}  // namespace orchard::jinja
