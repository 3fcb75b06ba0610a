// Attribute, item and slice access with jinja2's rules: `a.b` tries the Python attribute (a
// method) before the item, `a['b']` the item before the attribute, and a missing one is
// undefined rather than an error. Only reaching into an undefined value fails.
#pragma once
#include <optional>
#include <string>

#include "template/value.h"

namespace orchard::jinja {

Value get_attribute(const Value& object, const std::string& name);
Value get_item(const Value& object, const Value& key);
// Python's object[start:stop:step]; absent bounds are nullopt.
Value slice_value(const Value& object, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step);

}  // namespace orchard::jinja
