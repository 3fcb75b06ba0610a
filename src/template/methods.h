// The Python methods templates call on values: str (startswith, split, strip, replace, format
// ...), dict (get, items, keys, values) and list (index, count). Mutating methods are absent,
// as transformers' ImmutableSandboxedEnvironment forbids them.
#pragma once
#include <string>
#include <vector>

#include "template/value.h"

namespace orchard::jinja {

// The method bound to `object`, or undefined when it has none by that name.
Value find_method(const Value& object, const std::string& name);

// Pieces shared with filters.
std::vector<std::string> python_splitlines(const std::string& text, bool keep_ends);
std::string python_replace(const std::string& text, const std::string& old_text, const std::string& new_text,
                           int64_t count);
std::string python_capitalize(const std::string& text);

}  // namespace orchard::jinja
