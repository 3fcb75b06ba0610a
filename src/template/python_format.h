// How Python prints values: str() for template output, `~` and join, repr() inside containers.
// Chat templates print lists and floats, and their output must match Python byte for byte.
#pragma once
#include <string>

#include "template/value.h"

namespace orchard::jinja {

// Python's repr(float): the shortest string that round-trips, `1.0` not `1`, exponent form
// (`1e+16`, `1.5e-05`) outside 1e-4 <= |x| < 1e16, `nan`, `inf`.
std::string python_float_repr(double value);
// Python's repr(str): single quotes unless the text holds ' and no ", escapes for controls.
std::string python_string_repr(const std::string& text);
// str(value) as jinja2 prints it: undefined prints as nothing.
std::string python_str(const Value& value);
std::string python_repr(const Value& value);

}  // namespace orchard::jinja
