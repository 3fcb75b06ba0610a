// Parsing one untrusted JSON text: the nesting bound first (json_depth.h), then nlohmann's parser,
// every failure an orchard::Error naming the input. Header-only: the kernels-only build (no
// nlohmann) compiles src/base/ too.
#pragma once
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_depth.h"

namespace orchard {

// Throws orchard::Error "WHAT: JSON nested more than ..." or "WHAT: INVALID: <parser's message>"
// (any nlohmann exception: a syntax error, or a number beyond a double's range).
template <typename Json = nlohmann::json>
Json parse_json(std::string_view text, std::string_view what, std::string_view invalid = "not valid JSON") {
  check_json_depth(text, what);
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": ", invalid, ": ", e.what());
  }
}

}  // namespace orchard
