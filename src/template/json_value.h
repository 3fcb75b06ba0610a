// Template values from JSON: the messages, tools and other context a caller passes in.
// Object key order is kept, as Python dicts keep it.
#pragma once
#include <nlohmann/json.hpp>

#include "template/value.h"

namespace orchard::jinja {

// Throws orchard::Error for input nested beyond a sane depth.
Value value_from_json(const nlohmann::ordered_json& json);

}  // namespace orchard::jinja
