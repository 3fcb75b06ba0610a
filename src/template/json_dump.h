// Python's json.dumps, which transformers installs as the `tojson` filter (with
// ensure_ascii=False): templates embed tool schemas with it, so its spacing, key order, float
// format and escapes must match Python exactly.
#pragma once
#include <optional>
#include <string>

#include "template/value.h"

namespace orchard::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // none: one line; otherwise the per-level indent text
  std::optional<std::string> item_separator;  // defaults: ", " on one line, "," when indented
  std::string key_separator = ": ";
  bool sort_keys = false;
};

std::string json_dumps(const Value& value, const JsonDumpOptions& options);
// A JSON string literal with json.dumps's escapes.
std::string json_quote(const std::string& text, bool ensure_ascii);

}  // namespace orchard::jinja
