// A bound on the nesting of every JSON text Orchard reads (requests, tokenizer.json, config.json,
// safetensors headers, template inputs), checked on the raw text before any parser sees it.
//
// Why before: nlohmann::json parses iteratively, but copying, comparing or converting a value
// recurses once per level, so a request holding a value nested 100,000 deep crashed the server
// (SIGSEGV) at its first copy; a 100 MB safetensors header of '[' built 7.75 GB of empty arrays.
// A scan of the bytes refuses both before a single value is built.
#pragma once
#include <cstddef>
#include <optional>
#include <string_view>

namespace orchard {

// Deeper than any real input: the deepest JSON Schema among the shared tool definitions nests
// 9 levels, tokenizer.json 5, a chat request about 12.
inline constexpr int kMaxJsonDepth = 256;

// The byte offset of the '[' or '{' that first nests deeper than max_depth, if any. Brackets
// inside strings (escapes included) do not count; the text need not be valid JSON.
std::optional<size_t> json_too_deep_at(std::string_view text, int max_depth = kMaxJsonDepth);

// Throws orchard::Error "WHAT: JSON nested more than N levels deep (at byte B)".
void check_json_depth(std::string_view text, std::string_view what, int max_depth = kMaxJsonDepth);

}  // namespace orchard
