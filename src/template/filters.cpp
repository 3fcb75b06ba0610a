#include "template/filters.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "template/access.h"
#include "template/fault.h"
#include "template/interpreter.h"
#include "template/json_dump.h"
#include "template/methods.h"
#include "template/python_format.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

// Indent widths beyond this are refused rather than allocated.
constexpr int64_t kMaxIndentWidth = 1024;

std::string indent_spaces(int64_t width, const char* filter) {
  if (width > kMaxIndentWidth) fault(filter, "(): indent width ", width, " is larger than ", kMaxIndentWidth);
  return std::string(static_cast<size_t>(std::max<int64_t>(0, width)), ' ');
}

int64_t integer_argument(const Value& value, const char* filter, const char* parameter) {
  if (!value.is_int() && !value.is_bool())
    fault(filter, "(): argument '", parameter, "' must be an integer, not ", value.type_name());
  return value.as_int();
}

Value text_result(Interpreter& interpreter, std::string text) {
  interpreter.check_string_size(text.size());
  return Value::string(std::move(text));
}

// transformers: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
// sort_keys=sort_keys), returned as plain text (no HTML escaping, unlike jinja2's own tojson).
Value tojson(Interpreter& interpreter, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonDumpOptions options;
  options.ensure_ascii = a[0] && a[0]->truthy();
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_int()) options.indent = indent_spaces(a[1]->as_int(), "tojson");
    else if (a[1]->is_string()) options.indent = a[1]->as_string();
    else fault("tojson(): indent must be an integer or a string, not ", a[1]->type_name());
  }
  if (a[2] && !a[2]->is_none()) {
    if (!a[2]->is_list() || a[2]->items().size() != 2 || !a[2]->items()[0].is_string() || !a[2]->items()[1].is_string())
      fault("tojson(): separators must be a pair of strings");
    options.item_separator = a[2]->items()[0].as_string();
    options.key_separator = a[2]->items()[1].as_string();
  }
  options.sort_keys = a[3] && a[3]->truthy();
  return text_result(interpreter, json_dumps(input, options));
}

Value trim(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"chars"}, "trim");
  const std::string* chars = nullptr;
  if (a[0] && !a[0]->is_none()) {
    if (!a[0]->is_string()) fault("trim(): chars must be a string");
    chars = &a[0]->as_string();
  }
  return Value::string(python_strip(python_str(input), chars, StripSide::both));
}

Value length(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "length");
  return Value::integer(value_length(input));
}

Value items(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "items");
  if (input.is_undefined()) return Value::list({});
  if (!input.is_dict()) fault("items filter: can only get item pairs from a mapping, not ", input.type_name());
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.dict_data().entries) pairs.push_back(Value::list({key, value}, true));
  return Value::list(std::move(pairs));
}

Value upper(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "upper");
  return Value::string(ascii_upper(python_str(input)));
}

Value lower(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "lower");
  return Value::string(ascii_lower(python_str(input)));
}

Value capitalize(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "capitalize");
  return Value::string(python_capitalize(python_str(input)));
}

// jinja2's title: words start after whitespace or one of -({[<, each word is capitalized.
Value title(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "title");
  std::string text = python_str(input);
  bool word_start = true;
  for (size_t pos = 0; pos < text.size();) {
    const size_t at = pos;
    const uint32_t c = decode_code_point(text, pos);
    const bool separator = is_python_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (separator) {
      word_start = true;
      continue;
    }
    if (c < 0x80) text[at] = word_start ? static_cast<char>(std::toupper(text[at])) : static_cast<char>(std::tolower(text[at]));
    word_start = false;
  }
  return Value::string(std::move(text));
}

Value default_value(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"default_value", "boolean"}, "default");
  const bool use_default = input.is_undefined() || (a[1] && a[1]->truthy() && !input.truthy());
  if (!use_default) return input;
  return a[0] ? *a[0] : Value::string("");
}

Value join(Interpreter& interpreter, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"d", "attribute"}, "join");
  const std::string separator = a[0] ? python_str(*a[0]) : std::string();
  std::string out;
  bool first = true;
  for (const Value& item : iterate_value(input)) {
    if (!first) out += separator;
    first = false;
    out += python_str(a[1] && !a[1]->is_none() ? get_attribute(item, python_str(*a[1])) : item);
    interpreter.check_string_size(out.size());
  }
  return Value::string(std::move(out));
}

Value first(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "first");
  const std::vector<Value> values = iterate_value(input);
  if (values.empty()) return Value::undefined("No first item, sequence was empty.");
  return values.front();
}

Value last(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "last");
  const std::vector<Value> values = iterate_value(input);
  if (values.empty()) return Value::undefined("No last item, sequence was empty.");
  return values.back();
}

Value string(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "string");
  return Value::string(python_str(input));
}

// Python's float(str): surrounding whitespace allowed, plus inf/nan spellings.
std::optional<double> parse_python_float(const std::string& text) {
  const std::string trimmed = python_strip(text, nullptr, StripSide::both);
  if (trimmed.empty()) return std::nullopt;
  std::string lowered = ascii_lower(trimmed);
  const std::string unsigned_part = (lowered[0] == '+' || lowered[0] == '-') ? lowered.substr(1) : lowered;
  if (unsigned_part == "inf" || unsigned_part == "infinity" || unsigned_part == "nan") {
    const double magnitude = unsigned_part == "nan" ? std::nan("") : INFINITY;
    return lowered[0] == '-' ? -magnitude : magnitude;
  }
  for (char c : unsigned_part)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-')) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(trimmed.c_str(), &end);
  if (end != trimmed.c_str() + trimmed.size()) return std::nullopt;
  return value;
}

// Python's int(str, base) for bases 2-36: whitespace, sign and underscores between digits.
std::optional<int64_t> parse_python_int(const std::string& text, int64_t base) {
  std::string digits = python_strip(text, nullptr, StripSide::both);
  bool negative = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    negative = digits[0] == '-';
    digits.erase(0, 1);
  }
  if (digits.empty() || digits.front() == '_' || digits.back() == '_') return std::nullopt;
  __int128 value = 0;
  char previous = 0;
  for (char c : digits) {
    if (c == '_') {
      if (previous == '_') return std::nullopt;
      previous = c;
      continue;
    }
    previous = c;
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'z') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') digit = c - 'A' + 10;
    else return std::nullopt;
    if (digit >= base) return std::nullopt;
    value = value * base + digit;
    if (value > static_cast<__int128>(INT64_MAX) + 1) fault("int(): value out of range");
  }
  if (negative) value = -value;
  if (value > INT64_MAX) fault("int(): value out of range");
  return static_cast<int64_t>(value);
}

std::optional<int64_t> float_to_int(double value) {
  if (!std::isfinite(value) || std::fabs(value) >= 9.2e18) return std::nullopt;
  return static_cast<int64_t>(std::trunc(value));
}

Value to_int(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"default", "base"}, "int");
  const Value fallback = a[0] ? *a[0] : Value::integer(0);
  const int64_t base = a[1] ? integer_argument(*a[1], "int", "base") : 10;
  if (base < 2 || base > 36) fault("int(): base must be between 2 and 36");
  if (input.is_int() || input.is_bool()) return Value::integer(input.as_int());
  if (input.is_float()) {
    if (auto value = float_to_int(input.as_double())) return Value::integer(*value);
    return fallback;
  }
  if (input.is_string()) {
    if (auto value = parse_python_int(input.as_string(), base)) return Value::integer(*value);
    if (auto value = parse_python_float(input.as_string()))
      if (auto truncated = float_to_int(*value)) return Value::integer(*truncated);
  }
  return fallback;
}

Value to_float(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"default"}, "float");
  const Value fallback = a[0] ? *a[0] : Value::floating(0.0);
  if (input.is_number()) return Value::floating(input.as_double());
  if (input.is_string())
    if (auto value = parse_python_float(input.as_string())) return Value::floating(*value);
  return fallback;
}

Value to_list(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "list");
  return Value::list(iterate_value(input));
}

// map(attribute='name', default=x) or map('filter', args...).
Value map(Interpreter& interpreter, const Value& input, const CallArgs& args) {
  std::vector<Value> out;
  const auto values = iterate_value(input);
  const Value* attribute = nullptr;
  const Value* fallback = nullptr;
  for (const auto& [name, value] : args.keyword) {
    if (name == "attribute") attribute = &value;
    else if (name == "default") fallback = &value;
    else if (!args.positional.empty()) continue;  // keyword arguments for the mapped filter
    else fault("map(): unexpected keyword argument '", name, "'");
  }
  if (attribute) {
    for (const Value& item : values) {
      Value mapped = attribute->is_int() ? get_item(item, *attribute) : get_attribute(item, python_str(*attribute));
      if (mapped.is_undefined() && fallback) mapped = *fallback;
      out.push_back(std::move(mapped));
    }
    return Value::list(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) fault("map() needs a filter name or attribute=");
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : values) {
    interpreter.count_step();
    out.push_back(interpreter.apply_filter(args.positional[0].as_string(), item, filter_args));
  }
  return Value::list(std::move(out));
}

// select/reject (test on the item) and selectattr/rejectattr (test on an attribute).
Value select_items(Interpreter& interpreter, const Value& input, const CallArgs& args, bool on_attribute,
                   bool keep_matches) {
  size_t next = 0;
  std::string attribute;
  if (on_attribute) {
    if (args.positional.empty()) fault("selectattr/rejectattr need an attribute name");
    attribute = python_str(args.positional[next++]);
  }
  std::string test_name;
  CallArgs test_args;
  if (next < args.positional.size()) {
    test_name = python_str(args.positional[next++]);
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next), args.positional.end());
    test_args.keyword = args.keyword;
  }
  std::vector<Value> out;
  for (const Value& item : iterate_value(input)) {
    interpreter.count_step();
    const Value subject = on_attribute ? get_attribute(item, attribute) : item;
    const bool passes = test_name.empty() ? subject.truthy() : interpreter.apply_test(test_name, subject, test_args);
    if (passes == keep_matches) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value select(Interpreter& i, const Value& input, const CallArgs& args) { return select_items(i, input, args, false, true); }
Value reject(Interpreter& i, const Value& input, const CallArgs& args) { return select_items(i, input, args, false, false); }
Value selectattr(Interpreter& i, const Value& input, const CallArgs& args) { return select_items(i, input, args, true, true); }
Value rejectattr(Interpreter& i, const Value& input, const CallArgs& args) { return select_items(i, input, args, true, false); }

Value replace(Interpreter& interpreter, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"old", "new", "count"}, "replace");
  if (!a[0] || !a[1]) fault("replace() needs the old and new text");
  const int64_t count = a[2] && !a[2]->is_none() ? integer_argument(*a[2], "replace", "count") : -1;
  return text_result(interpreter, python_replace(python_str(input), python_str(*a[0]), python_str(*a[1]), count));
}

Value safe(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "safe");
  return input;
}

Value escape(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "escape");
  std::string out;
  for (char c : python_str(input)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return Value::string(std::move(out));
}

Value abs_value(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "abs");
  if (input.is_float()) return Value::floating(std::fabs(input.as_double()));
  if (input.is_int() || input.is_bool()) {
    if (input.as_int() == INT64_MIN) fault("integer overflow in abs");
    return Value::integer(std::llabs(input.as_int()));
  }
  fault("bad operand type for abs(): '", input.type_name(), "'");
}

Value round_value(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"precision", "method"}, "round");
  const int64_t precision = a[0] ? integer_argument(*a[0], "round", "precision") : 0;
  const std::string method = a[1] ? python_str(*a[1]) : "common";
  if (!input.is_number()) fault("round(): expected a number, got ", input.type_name());
  if (precision < 0 || precision > 30) fault("round(): precision must be between 0 and 30");
  const double value = input.as_double();
  if (method == "common") {
    if (input.is_int() || input.is_bool()) return Value::integer(input.as_int());
    // Python's round() rounds the exact binary value half-to-even, as printf does.
    char buffer[400];
    std::snprintf(buffer, sizeof(buffer), "%.*f", static_cast<int>(precision), value);
    return Value::floating(std::strtod(buffer, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value::floating(std::ceil(value * scale) / scale);
  if (method == "floor") return Value::floating(std::floor(value * scale) / scale);
  fault("round(): method must be 'common', 'ceil' or 'floor'");
}

Value reverse(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "reverse");
  std::vector<Value> values = iterate_value(input);
  std::reverse(values.begin(), values.end());
  if (input.is_string()) {
    std::string out;
    for (const Value& c : values) out += c.as_string();
    return Value::string(std::move(out));
  }
  return Value::list(std::move(values));
}

Value sum(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"attribute", "start"}, "sum");
  Value total = a[1] ? *a[1] : Value::integer(0);
  for (const Value& item : iterate_value(input)) {
    const Value term = a[0] && !a[0]->is_none() ? get_attribute(item, python_str(*a[0])) : item;
    if (!term.is_number() || !total.is_number()) fault("sum(): unsupported operand '", term.type_name(), "'");
    if (total.is_float() || term.is_float()) total = Value::floating(total.as_double() + term.as_double());
    else {
      int64_t result;
      if (__builtin_add_overflow(total.as_int(), term.as_int(), &result)) fault("integer overflow in sum");
      total = Value::integer(result);
    }
  }
  return total;
}

Value sort(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"reverse", "case_sensitive", "attribute"}, "sort");
  const bool descending = a[0] && a[0]->truthy();
  const bool case_sensitive = a[1] && a[1]->truthy();
  std::vector<Value> values = iterate_value(input);
  auto key = [&](const Value& item) {
    Value k = a[2] && !a[2]->is_none() ? get_attribute(item, python_str(*a[2])) : item;
    if (!case_sensitive && k.is_string()) return Value::string(ascii_lower(k.as_string()));
    return k;
  };
  std::stable_sort(values.begin(), values.end(), [&](const Value& x, const Value& y) {
    return descending ? compare_values(key(y), key(x)) < 0 : compare_values(key(x), key(y)) < 0;
  });
  return Value::list(std::move(values));
}

// jinja2's indent: every line but the first (unless first=True) gets the prefix; blank lines
// only with blank=True.
Value indent(Interpreter& interpreter, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"width", "first", "blank"}, "indent");
  std::string prefix = "    ";
  if (a[0]) prefix = a[0]->is_string() ? a[0]->as_string() : indent_spaces(integer_argument(*a[0], "indent", "width"), "indent");
  const bool indent_first = a[1] && a[1]->truthy();
  const bool indent_blank = a[2] && a[2]->truthy();
  const std::vector<std::string> lines = python_splitlines(python_str(input) + "\n", false);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (indent_blank || !lines[i].empty()) out += prefix;
    }
    out += lines[i];
  }
  if (indent_first) out = prefix + out;
  return text_result(interpreter, std::move(out));
}

Value attr(Interpreter&, const Value& input, const CallArgs& args) {
  auto a = bind_arguments(args, {"name"}, "attr");
  if (!a[0]) fault("attr() needs an attribute name");
  return get_attribute(input, python_str(*a[0]));
}

Value unique(Interpreter&, const Value& input, const CallArgs& args) {
  bind_arguments(args, {}, "unique");
  std::vector<Value> out;
  for (const Value& item : iterate_value(input)) {
    const bool seen = std::any_of(out.begin(), out.end(), [&](const Value& kept) { return values_equal(kept, item); });
    if (!seen) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value extreme(const Value& input, const CallArgs& args, bool want_max) {
  auto a = bind_arguments(args, {"case_sensitive", "attribute"}, want_max ? "max" : "min");
  const std::vector<Value> values = iterate_value(input);
  if (values.empty()) return Value::undefined(std::string("No aggregated item, sequence was empty."));
  const bool case_sensitive = a[0] && a[0]->truthy();
  auto key = [&](const Value& item) {
    Value k = a[1] && !a[1]->is_none() ? get_attribute(item, python_str(*a[1])) : item;
    if (!case_sensitive && k.is_string()) return Value::string(ascii_lower(k.as_string()));
    return k;
  };
  const Value* best = &values[0];
  for (const Value& item : values) {
    const int order = compare_values(key(item), key(*best));
    if (want_max ? order > 0 : order < 0) best = &item;
  }
  return *best;
}

Value max_value(Interpreter&, const Value& input, const CallArgs& args) { return extreme(input, args, true); }
Value min_value(Interpreter&, const Value& input, const CallArgs& args) { return extreme(input, args, false); }

const std::map<std::string, FilterFunction>& filter_table() {
  static const std::map<std::string, FilterFunction> table = {
      {"tojson", tojson},         {"trim", trim},         {"length", length},
      {"count", length},          {"items", items},       {"upper", upper},
      {"lower", lower},           {"capitalize", capitalize}, {"title", title},
      {"default", default_value}, {"d", default_value},   {"join", join},
      {"first", first},           {"last", last},         {"string", string},
      {"int", to_int},            {"float", to_float},    {"list", to_list},
      {"map", map},               {"select", select},     {"reject", reject},
      {"selectattr", selectattr}, {"rejectattr", rejectattr}, {"replace", replace},
      {"safe", safe},             {"escape", escape},     {"e", escape},
      {"forceescape", escape},    {"abs", abs_value},     {"round", round_value},
      {"reverse", reverse},       {"sum", sum},           {"sort", sort},
      {"indent", indent},         {"attr", attr},         {"unique", unique},
      {"max", max_value},         {"min", min_value},
  };
  return table;
}

}  // namespace

FilterFunction find_filter(const std::string& name) {
  const auto& table = filter_table();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace orchard::jinja
