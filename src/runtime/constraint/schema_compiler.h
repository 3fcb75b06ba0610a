// JSON Schema (a subset) to a byte NFA. The generated text is compact-ish JSON: properties in
// the schema's order, bounded whitespace between tokens, no whitespace in enum/const values.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "runtime/constraint/byte_automaton.h"

namespace orchard::constraint {

struct SchemaOptions {
  // Whitespace allowed between JSON tokens: nothing, one space, or a newline followed by at most
  // this many spaces. Bounded so that a model cannot loop on whitespace forever, long enough for
  // the pretty-printed JSON models are trained on.
  int max_indent = 12;
  // Nesting levels allowed inside free-form JSON values (json_object mode, untyped values):
  // deeper containers must be empty. Each level copies the value automaton twice.
  int free_form_depth = 4;
  // How many times one `$ref` may be entered inside itself; deeper uses admit no value.
  int max_ref_depth = 3;
  // Literal bytes before and after the JSON value (e.g. a tool-call wrapper).
  std::string prefix;
  std::string suffix;
  // Upper bound on automaton states; larger schemas are rejected with an error.
  size_t max_states = 200000;
  // Upper bound on the NFA the schema becomes, checked while it is built. A string character
  // takes about 40 NFA states, so this allows maxLength 25,000; 1M states take about 100 MB
  // and 0.1 s to build.
  size_t max_nfa_states = 1'000'000;
  // Upper bound on the determinization's work, see DfaBudget.
  size_t max_subset_entries = 4u << 20;
  // Wall-clock limit of one compilation, and a question the compilation asks as it goes (e.g.
  // whether the request's client is still there); either ends it with an error.
  std::chrono::milliseconds time_limit{10000};
  std::function<bool()> cancelled;
};

// Writes the language of `schema` (with the options' prefix and suffix) into `nfa`; returns the
// start and accepting states. Throws orchard::Error naming the schema path (`$.properties.x`)
// for invalid or unsupported schemas.
// Takes ordered_json because properties are generated in the order the schema lists them.
std::pair<int32_t, int32_t> compile_schema(const nlohmann::ordered_json& schema, const SchemaOptions& options, Nfa& nfa);

}  // namespace orchard::constraint
