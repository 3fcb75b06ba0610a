#include "runtime/constraint/schema_compiler.h"

#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace orchard::constraint {
namespace {

using Json = nlohmann::ordered_json;

// Integers are generated with at most 18 digits so that every value fits an int64 (a parser
// would otherwise turn a long digit run into a float, and "type": "integer" would not hold).
constexpr int64_t kBigInt = 999999999999999999;

constexpr size_t kMaxOptionalProperties = 100;

const std::set<std::string> kAnnotations = {"title", "description", "$schema", "$id", "$comment", "default",
                                            "examples", "format", "readOnly", "writeOnly", "deprecated",
                                            "$defs", "definitions"};
const std::set<std::string> kSupported = {"type", "properties", "required", "additionalProperties", "items",
                                          "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
                                          "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "anyOf",
                                          "oneOf", "allOf", "$ref"};

class Compiler {
 public:
  Compiler(const Json& root, const SchemaOptions& options, Nfa& nfa) : root_(root), options_(options), nfa_(nfa) {}

  int32_t value(const Json& schema, const std::string& path, int32_t from) {
    if (schema.is_boolean()) return schema.get<bool>() ? any_value(from, options_.free_form_depth) : never();
    if (!schema.is_object()) fail(path, ": a schema must be an object or a boolean");
    for (const auto& [key, _] : schema.items())
      if (!kSupported.contains(key) && !kAnnotations.contains(key))
        fail(path, ": unsupported keyword \"", key, "\"");

    if (schema.contains("$ref")) return reference(schema, path, from);
    if (schema.contains("const"))
      return naming(path, "const", [&] { return nfa_.literal(from, schema["const"].dump()); });
    if (schema.contains("enum")) {
      const Json& values = schema["enum"];
      if (!values.is_array() || values.empty()) fail(path, ".enum: must be a non-empty array");
      return naming(path, "enum", [&] {
        const int32_t end = nfa_.add_state();
        for (const Json& v : values) nfa_.add_epsilon(nfa_.literal(from, v.dump()), end);
        return end;
      });
    }
    for (const char* key : {"anyOf", "oneOf", "allOf"}) {
      if (!schema.contains(key)) continue;
      const Json& subs = schema[key];
      const std::string sub_path = path + "." + key;
      if (!subs.is_array() || subs.empty()) fail(sub_path, ": must be a non-empty array");
      for (const auto& [k, _] : schema.items())
        if (k != key && kSupported.contains(k))
          fail(path, ": \"", key, "\" beside \"", k, "\" is unsupported (move it into each alternative)");
      if (std::string(key) == "allOf") {
        if (subs.size() != 1) fail(sub_path, ": allOf with more than one schema is unsupported");
        return value(subs[0], sub_path + "[0]", from);
      }
      // oneOf is compiled as anyOf: exclusivity between alternatives is not enforced.
      const int32_t end = nfa_.add_state();
      for (size_t i = 0; i < subs.size(); ++i)
        nfa_.add_epsilon(value(subs[i], sub_path + "[" + std::to_string(i) + "]", from), end);
      return end;
    }

    std::vector<std::string> types;
    if (schema.contains("type")) {
      const Json& t = schema["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const Json& x : t) {
          if (!x.is_string()) fail(path, ".type: must name types");
          types.push_back(x.get<std::string>());
        }
      } else {
        fail(path, ".type: must be a string or an array of strings");
      }
    } else if (schema.contains("properties") || schema.contains("additionalProperties") ||
               schema.contains("required")) {
      types = {"object"};
    } else if (schema.contains("items") || schema.contains("minItems") || schema.contains("maxItems")) {
      types = {"array"};
    } else if (schema.contains("minLength") || schema.contains("maxLength")) {
      types = {"string"};
    } else if (schema.contains("minimum") || schema.contains("maximum") || schema.contains("exclusiveMinimum") ||
               schema.contains("exclusiveMaximum")) {
      types = {"number"};
    } else {
      return any_value(from, options_.free_form_depth);
    }
    const int32_t end = nfa_.add_state();
    for (const std::string& type : types) nfa_.add_epsilon(typed(schema, type, path, from), end);
    return end;
  }

 private:
  int32_t never() { return nfa_.add_state(); }  // a state nothing leads to

  // Runs `build`; if the NFA runs out of states inside it, the error names `path.keyword`, the
  // part of the schema that asked for too much: the innermost keyword that began with at least
  // half of the states still free (one that began with less is not to blame for the rest).
  template <typename Build>
  int32_t naming(const std::string& path, const char* keyword, Build&& build) {
    const size_t free_before = nfa_.max_states() - nfa_.size();
    try {
      return build();
    } catch (const TooManyStates& e) {
      if (free_before < nfa_.max_states() / 2) throw;
      fail(path, ".", keyword, ": the schema needs ", e.what(), " (a smaller bound or fewer choices)");
    }
  }

  // The keyword that sized a string or array: its larger bound, else what it repeats.
  static const char* bound_keyword(const Json& schema, const char* min_key, const char* max_key, const char* absent) {
    auto bound = [&](const char* key) -> int64_t {
      auto it = schema.find(key);
      return it != schema.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
    };
    if (bound(min_key) < 0 && bound(max_key) < 0) return absent;
    return bound(max_key) >= bound(min_key) ? max_key : min_key;
  }

  int32_t typed(const Json& schema, const std::string& type, const std::string& path, int32_t from) {
    if (type == "null") return nfa_.literal(from, "null");
    if (type == "boolean") {
      const int32_t end = nfa_.add_state();
      nfa_.add_epsilon(nfa_.literal(from, "true"), end);
      nfa_.add_epsilon(nfa_.literal(from, "false"), end);
      return end;
    }
    if (type == "string") {
      const int64_t min = count(schema, "minLength", path, 0);
      const int64_t max = count(schema, "maxLength", path, -1);
      if (max >= 0 && max < min) fail(path, ": maxLength is below minLength");
      return naming(path, bound_keyword(schema, "minLength", "maxLength", "type"), [&] { return string(from, min, max); });
    }
    if (type == "integer") {
      auto [lo, hi] = bounds(schema, path, true);
      if (lo > hi) fail(path, ": no integer lies between minimum and maximum");
      return integer(from, lo, hi);
    }
    if (type == "number") {
      auto [lo, hi] = bounds(schema, path, false);
      if (lo > hi) fail(path, ": no number with an integer part fits between minimum and maximum");
      return number(from, lo, hi, !schema.contains("minimum") && !schema.contains("maximum") &&
                                      !schema.contains("exclusiveMinimum") && !schema.contains("exclusiveMaximum"));
    }
    if (type == "array")
      return naming(path, bound_keyword(schema, "minItems", "maxItems", "items"), [&] { return array(schema, path, from); });
    if (type == "object") return naming(path, "properties", [&] { return object(schema, path, from); });
    fail(path, ".type: unknown type \"", type, "\"");
  }

  static int64_t count(const Json& schema, const char* key, const std::string& path, int64_t absent) {
    if (!schema.contains(key)) return absent;
    const Json& v = schema[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) fail(path, ".", key, ": must be a non-negative integer");
    return v.get<int64_t>();
  }

  // Integer bounds [lo, hi] implied by minimum/maximum and their exclusive forms. For numbers
  // they are tightened to integers: a number is generated as an integer part in range plus a
  // fraction that keeps it in range, which is exact only when the bounds are integers.
  static std::pair<int64_t, int64_t> bounds(const Json& schema, const std::string& path, bool integer) {
    double lo = -double(kBigInt), hi = double(kBigInt);
    auto read = [&](const char* key) {
      const Json& v = schema[key];
      if (!v.is_number()) fail(path, ".", key, ": must be a number");
      return v.get<double>();
    };
    if (schema.contains("minimum")) lo = std::max(lo, std::ceil(read("minimum")));
    if (schema.contains("maximum")) hi = std::min(hi, std::floor(read("maximum")));
    if (schema.contains("exclusiveMinimum")) {
      const double x = read("exclusiveMinimum");
      // For numbers, "> x" with x an integer allows x.5: tightening to x + 1 keeps it simple and safe.
      lo = std::max(lo, std::floor(x) + 1);
    }
    if (schema.contains("exclusiveMaximum")) {
      const double x = read("exclusiveMaximum");
      hi = std::min(hi, std::ceil(x) - 1);
    }
    (void)integer;
    lo = std::max(lo, -double(kBigInt));
    hi = std::min(hi, double(kBigInt));
    if (lo > hi) return {1, 0};
    return {int64_t(lo), int64_t(hi)};
  }

  // ---- whitespace and strings ----

  int32_t ws(int32_t from) {
    const int32_t end = nfa_.add_state();
    nfa_.add_epsilon(from, end);
    nfa_.add_range(from, ' ', ' ', end);
    int32_t line = nfa_.range(from, '\n', '\n');
    nfa_.add_epsilon(line, end);
    for (int i = 0; i < options_.max_indent; ++i) {
      line = nfa_.range(line, ' ', ' ');
      nfa_.add_epsilon(line, end);
    }
    return end;
  }

  void hex(int32_t from, int32_t to) {
    nfa_.add_range(from, '0', '9', to);
    nfa_.add_range(from, 'a', 'f', to);
    nfa_.add_range(from, 'A', 'F', to);
  }

  // One character of a JSON string's contents: valid UTF-8 without control characters, or an
  // escape. \u escapes of surrogates must come as a high-low pair (parsers reject lone ones);
  // a pair counts as one character, as it is one code point.
  int32_t string_char(int32_t from) {
    const int32_t end = nfa_.add_state();
    nfa_.add_range(from, 0x20, 0x21, end);
    nfa_.add_range(from, 0x23, 0x5B, end);
    nfa_.add_range(from, 0x5D, 0x7F, end);
    auto cont = [&](int32_t s, int n) {
      for (int i = 0; i < n - 1; ++i) s = nfa_.range(s, 0x80, 0xBF);
      nfa_.add_range(s, 0x80, 0xBF, end);
    };
    cont(nfa_.range(from, 0xC2, 0xDF), 1);
    // E0 needs A0-BF next; ED needs 80-9F (no surrogates); F0 needs 90-BF; F4 needs 80-8F.
    {
      const int32_t e0 = nfa_.add_state();
      nfa_.add_range(from, 0xE0, 0xE0, e0);
      cont(nfa_.range(e0, 0xA0, 0xBF), 1);
    }
    cont(nfa_.range(from, 0xE1, 0xEC), 2);
    cont(nfa_.range(nfa_.range(from, 0xED, 0xED), 0x80, 0x9F), 1);
    cont(nfa_.range(from, 0xEE, 0xEF), 2);
    cont(nfa_.range(nfa_.range(from, 0xF0, 0xF0), 0x90, 0xBF), 2);
    cont(nfa_.range(from, 0xF1, 0xF3), 3);
    cont(nfa_.range(nfa_.range(from, 0xF4, 0xF4), 0x80, 0x8F), 2);

    const int32_t esc = nfa_.range(from, '\\', '\\');
    for (char c : std::string_view("\"\\/bfnrt")) nfa_.add_range(esc, uint8_t(c), uint8_t(c), end);
    const int32_t u = nfa_.range(esc, 'u', 'u');
    // Not a surrogate: first digit other than d/D, or d followed by 0-7.
    const int32_t two = nfa_.add_state();  // after the first two hex digits
    const int32_t d = nfa_.add_state();
    nfa_.add_range(u, 'd', 'd', d);
    nfa_.add_range(u, 'D', 'D', d);
    {
      const int32_t first = nfa_.add_state();
      nfa_.add_range(u, '0', '9', first);
      nfa_.add_range(u, 'a', 'c', first);
      nfa_.add_range(u, 'A', 'C', first);
      nfa_.add_range(u, 'e', 'f', first);
      nfa_.add_range(u, 'E', 'F', first);
      hex(first, two);
    }
    nfa_.add_range(d, '0', '7', two);
    const int32_t three = nfa_.add_state();
    hex(two, three);
    hex(three, end);
    // High surrogate \uD800-\uDBFF, then \uDC00-\uDFFF.
    const int32_t high = nfa_.add_state();
    nfa_.add_range(d, '8', '9', high);
    nfa_.add_range(d, 'a', 'b', high);
    nfa_.add_range(d, 'A', 'B', high);
    int32_t s = nfa_.add_state();
    hex(high, s);
    const int32_t s2 = nfa_.add_state();
    hex(s, s2);
    s = nfa_.literal(s2, "\\u");
    const int32_t low = nfa_.add_state();
    nfa_.add_range(s, 'd', 'd', low);
    nfa_.add_range(s, 'D', 'D', low);
    const int32_t l1 = nfa_.add_state();
    nfa_.add_range(low, 'c', 'f', l1);
    nfa_.add_range(low, 'C', 'F', l1);
    const int32_t l2 = nfa_.add_state();
    hex(l1, l2);
    hex(l2, end);
    return end;
  }

  // `max` < 0: unbounded.
  int32_t string(int32_t from, int64_t min, int64_t max) {
    int32_t s = nfa_.literal(from, "\"");
    for (int64_t i = 0; i < min; ++i) s = string_char(s);
    if (max < 0) {
      nfa_.add_epsilon(string_char(s), s);
    } else {
      const int32_t end = nfa_.add_state();
      for (int64_t i = min; i < max; ++i) {
        nfa_.add_epsilon(s, end);
        s = string_char(s);
      }
      nfa_.add_epsilon(s, end);
      s = end;
    }
    return nfa_.literal(s, "\"");
  }

  // ---- numbers ----

  int32_t digits(int32_t from, size_t n) {
    for (size_t i = 0; i < n; ++i) from = nfa_.range(from, '0', '9');
    return from;
  }

  // Decimal strings of equal length from a to b (a <= b digit-wise).
  int32_t same_length(int32_t from, const std::string& a, const std::string& b) {
    if (a.empty()) return from;
    if (a.find_first_not_of('0') == std::string::npos && b.find_first_not_of('9') == std::string::npos)
      return digits(from, a.size());
    if (a[0] == b[0]) return same_length(nfa_.literal(from, a.substr(0, 1)), a.substr(1), b.substr(1));
    const size_t rest = a.size() - 1;
    const int32_t end = nfa_.add_state();
    nfa_.add_epsilon(same_length(nfa_.literal(from, a.substr(0, 1)), a.substr(1), std::string(rest, '9')), end);
    if (a[0] + 1 <= b[0] - 1) nfa_.add_epsilon(digits(nfa_.range(from, uint8_t(a[0] + 1), uint8_t(b[0] - 1)), rest), end);
    nfa_.add_epsilon(same_length(nfa_.literal(from, b.substr(0, 1)), std::string(rest, '0'), b.substr(1)), end);
    return end;
  }

  // Canonical decimal (no leading zeros) of every integer in [lo, hi], 0 <= lo <= hi.
  int32_t unsigned_range(int32_t from, uint64_t lo, uint64_t hi) {
    const int32_t end = nfa_.add_state();
    uint64_t floor = 0, ceiling = 9;
    size_t full_from = 0, full_to = 0;  // lengths (> 1) where every number is in range
    for (size_t len = 1; len <= 19; ++len) {
      const uint64_t a = std::max(lo, floor), b = std::min(hi, ceiling);
      if (a <= b && a == floor && b == ceiling && len > 1) {
        if (full_from == 0) full_from = len;
        full_to = len;
      } else if (a <= b) {
        nfa_.add_epsilon(same_length(from, std::to_string(a), std::to_string(b)), end);
      }
      if (ceiling >= hi) break;
      floor = ceiling + 1;
      ceiling = ceiling * 10 + 9;
    }
    // The full lengths form one chain [1-9][0-9]{from-1, to-1} instead of one branch per length.
    if (full_from > 0) {
      int32_t s = digits(nfa_.range(from, '1', '9'), full_from - 1);
      for (size_t len = full_from; len <= full_to; ++len) {
        nfa_.add_epsilon(s, end);
        if (len < full_to) s = nfa_.range(s, '0', '9');
      }
    }
    return end;
  }

  int32_t integer(int32_t from, int64_t lo, int64_t hi) {
    const int32_t end = nfa_.add_state();
    if (hi >= 0) nfa_.add_epsilon(unsigned_range(from, uint64_t(std::max<int64_t>(lo, 0)), uint64_t(hi)), end);
    if (lo < 0) {
      const int32_t minus = nfa_.literal(from, "-");
      nfa_.add_epsilon(unsigned_range(minus, uint64_t(hi < 0 ? -hi : 1), uint64_t(-lo)), end);
    }
    return end;
  }

  int32_t fraction(int32_t from, bool zeros_only) {
    const int32_t end = nfa_.add_state();
    nfa_.add_epsilon(from, end);
    const int32_t dot = nfa_.literal(from, ".");
    const int32_t d = zeros_only ? nfa_.range(dot, '0', '0') : nfa_.range(dot, '0', '9');
    nfa_.add_range(d, '0', zeros_only ? '0' : '9', d);
    nfa_.add_epsilon(d, end);
    return end;
  }

  // Numbers in [lo, hi] (integer bounds): an integer part, then a fraction that may be nonzero
  // only where it cannot cross a bound. An exponent only when the number is unbounded.
  int32_t number(int32_t from, int64_t lo, int64_t hi, bool unbounded) {
    const int32_t end = nfa_.add_state();
    if (hi >= 0) {
      const int64_t a = std::max<int64_t>(lo, 0);
      if (a <= hi - 1) nfa_.add_epsilon(fraction(unsigned_range(from, uint64_t(a), uint64_t(hi - 1)), false), end);
      if (hi >= a) nfa_.add_epsilon(fraction(nfa_.literal(from, std::to_string(hi)), hi != kBigInt ? true : false), end);
    }
    if (lo < 0) {
      // "-J.f" is -(J + f): any fraction for J in [max(0, -hi), -lo - 1], only zeros at J = -lo.
      const int32_t minus = nfa_.literal(from, "-");
      const int64_t a = hi < 0 ? -hi : 0;
      if (a <= -lo - 1) nfa_.add_epsilon(fraction(unsigned_range(minus, uint64_t(a), uint64_t(-lo - 1)), false), end);
      nfa_.add_epsilon(fraction(nfa_.literal(minus, std::to_string(-lo)), lo != -kBigInt), end);
    }
    if (!unbounded) return end;
    // Exponents of at most two digits keep values finite as doubles.
    const int32_t out = nfa_.add_state();
    nfa_.add_epsilon(end, out);
    const int32_t e = nfa_.add_state();
    nfa_.add_range(end, 'e', 'e', e);
    nfa_.add_range(end, 'E', 'E', e);
    const int32_t sign = nfa_.add_state();
    nfa_.add_epsilon(e, sign);
    nfa_.add_range(e, '+', '+', sign);
    nfa_.add_range(e, '-', '-', sign);
    const int32_t d1 = nfa_.range(sign, '0', '9');
    nfa_.add_epsilon(d1, out);
    nfa_.add_epsilon(nfa_.range(d1, '0', '9'), out);
    return out;
  }

  // ---- containers ----

  int32_t separator(int32_t from) { return ws(nfa_.literal(ws(from), ",")); }

  // "[" items "]" with between min and max items (max < 0: unbounded), each made by `item`.
  template <typename Item>
  int32_t sequence(int32_t from, int64_t min, int64_t max, Item&& item, char open, char close) {
    const int32_t body = ws(nfa_.literal(from, std::string(1, open)));
    const int32_t done = nfa_.add_state();
    if (min == 0) nfa_.add_epsilon(body, done);
    const int64_t copies = max >= 0 ? max : std::max<int64_t>(min, 1);
    int32_t last = -1, last_start = -1;
    for (int64_t i = 1; i <= copies; ++i) {
      // A state of its own: `body` may also lead to the end (an empty sequence), which the
      // loop back below must not.
      last_start = nfa_.add_state();
      nfa_.add_epsilon(i == 1 ? body : separator(last), last_start);
      last = item(last_start);
      if (i >= min) nfa_.add_epsilon(last, done);
    }
    // Unbounded: loop back into the last copy rather than making another one (copies nest, so
    // one more per level would grow free-form JSON exponentially with depth).
    if (max < 0) nfa_.add_epsilon(separator(last), last_start);
    return nfa_.literal(ws(done), std::string(1, close));
  }

  int32_t array(const Json& schema, const std::string& path, int32_t from) {
    const int64_t min = count(schema, "minItems", path, 0);
    const int64_t max = count(schema, "maxItems", path, -1);
    if (max >= 0 && max < min) fail(path, ": maxItems is below minItems");
    if (schema.contains("items") && schema["items"].is_array())
      fail(path, ".items: tuple-style items arrays are unsupported");
    const Json items = schema.contains("items") ? schema["items"] : Json(true);
    return sequence(from, min, max, [&](int32_t s) { return value(items, path + ".items", s); }, '[', ']');
  }

  int32_t member(int32_t from, const std::string& key, const Json& schema, const std::string& path) {
    int32_t s = ws(nfa_.literal(ws(nfa_.literal(from, Json(key).dump())), ":"));
    return value(schema, path, s);
  }

  int32_t object(const Json& schema, const std::string& path, int32_t from) {
    const bool has_properties = schema.contains("properties");
    const Json additional = schema.contains("additionalProperties") ? schema["additionalProperties"] : Json(true);
    if (!has_properties) {
      if (schema.contains("required") && !schema["required"].empty())
        fail(path, ".required: required properties need \"properties\" describing them");
      if (additional.is_boolean() && !additional.get<bool>()) return nfa_.literal(ws(nfa_.literal(from, "{")), "}");
      // A map: any keys, values per additionalProperties.
      return sequence(from, 0, -1, [&](int32_t s) {
        const int32_t colon = ws(nfa_.literal(ws(string(s, 0, -1)), ":"));
        return value(additional, path + ".additionalProperties", colon);
      }, '{', '}');
    }
    const Json& properties = schema["properties"];
    if (!properties.is_object()) fail(path, ".properties: must be an object");
    std::set<std::string> required;
    if (schema.contains("required")) {
      if (!schema["required"].is_array()) fail(path, ".required: must be an array of names");
      for (const Json& r : schema["required"]) {
        if (!r.is_string()) fail(path, ".required: must be an array of names");
        if (!properties.contains(r.get<std::string>()))
          fail(path, ".required: \"", r.get<std::string>(), "\" is not in properties");
        required.insert(r.get<std::string>());
      }
    }
    // After each optional property the automaton must remember which later keys may still come,
    // so its size grows with the square of their number: 100 compile in 0.4 s, 200 in 1.5 s,
    // 1,000 took 47 s and 1.1 GB before this bound.
    if (properties.size() - required.size() > kMaxOptionalProperties)
      fail(path, ".properties: more than ", kMaxOptionalProperties, " optional properties in one object (",
           properties.size() - required.size(), "); list more of them in \"required\"");
    // Properties come in the schema's order; optional ones may be left out. Junction states
    // track whether a property has been written yet (a comma is needed before the next one).
    const int32_t body = ws(nfa_.literal(from, "{"));
    int32_t none_yet = body;  // no property written so far (-1: not possible here)
    int32_t some = -1;        // at least one written
    for (const auto& [name, sub] : properties.items()) {
      const int32_t key_start = nfa_.add_state();
      if (none_yet >= 0) nfa_.add_epsilon(none_yet, key_start);
      if (some >= 0) nfa_.add_epsilon(separator(some), key_start);
      const int32_t after = member(key_start, name, sub, path + ".properties." + name);
      if (!required.contains(name)) {
        // Skipping keeps both junctions; writing leads to `some`.
        const int32_t joined = nfa_.add_state();
        nfa_.add_epsilon(after, joined);
        if (some >= 0) nfa_.add_epsilon(some, joined);
        some = joined;
      } else {
        some = after;
        none_yet = -1;
      }
    }
    const int32_t done = nfa_.add_state();
    if (none_yet >= 0) nfa_.add_epsilon(none_yet, done);
    if (some >= 0) nfa_.add_epsilon(ws(some), done);
    return nfa_.literal(done, "}");
  }

  // Any JSON value, containers nested at most `depth` deep (deeper ones must be empty).
  int32_t any_value(int32_t from, int depth) {
    const int32_t end = nfa_.add_state();
    for (const char* word : {"null", "true", "false"}) nfa_.add_epsilon(nfa_.literal(from, word), end);
    nfa_.add_epsilon(number(from, -kBigInt, kBigInt, true), end);
    nfa_.add_epsilon(string(from, 0, -1), end);
    const int64_t max = depth > 0 ? -1 : 0;
    nfa_.add_epsilon(sequence(from, 0, max, [&](int32_t s) { return any_value(s, depth - 1); }, '[', ']'), end);
    nfa_.add_epsilon(sequence(from, 0, max, [&](int32_t s) {
      const int32_t colon = ws(nfa_.literal(ws(string(s, 0, -1)), ":"));
      return any_value(colon, depth - 1);
    }, '{', '}'), end);
    return end;
  }

  int32_t reference(const Json& schema, const std::string& path, int32_t from) {
    const Json& ref = schema["$ref"];
    if (!ref.is_string()) fail(path, ".$ref: must be a string");
    const std::string target = ref.get<std::string>();
    if (target.empty() || target[0] != '#') fail(path, ".$ref: only local references (\"#/...\") are supported");
    const Json* resolved = nullptr;
    try {
      resolved = &root_.at(Json::json_pointer(target.substr(1)));
    } catch (const nlohmann::json::exception&) {
      fail(path, ".$ref: \"", target, "\" does not resolve");
    }
    int& depth = ref_depth_[target];
    if (depth > options_.max_ref_depth) return never();
    ++depth;
    const int32_t end = value(*resolved, target, from);
    --depth;
    return end;
  }

  const Json& root_;
  const SchemaOptions& options_;
  Nfa& nfa_;
  std::map<std::string, int> ref_depth_;
};

}  // namespace

std::pair<int32_t, int32_t> compile_schema(const nlohmann::ordered_json& schema, const SchemaOptions& options,
                                           Nfa& nfa) {
  try {
    const int32_t start = nfa.add_state();
    Compiler compiler(schema, options, nfa);
    const int32_t end = nfa.literal(compiler.value(schema, "$", nfa.literal(start, options.prefix)), options.suffix);
    return {start, end};
  } catch (const TooManyStates& e) {
    fail("$: the schema needs ", e.what(), " (smaller bounds or fewer choices)");
  }
}

}  // namespace orchard::constraint
