#include "template/value.h"

#include "template/callable.h"
#include "template/fault.h"
#include "template/utf8.h"

namespace orchard::jinja {

const Value* DictData::find(const Value& key) const {
  for (const auto& entry : entries)
    if (values_equal(entry.first, key)) return &entry.second;
  return nullptr;
}

const Value* DictData::find(const std::string& key) const {
  for (const auto& entry : entries)
    if (entry.first.is_string() && entry.first.as_string() == key) return &entry.second;
  return nullptr;
}

void DictData::set(const Value& key, Value value) {
  for (auto& entry : entries) {
    if (values_equal(entry.first, key)) {
      entry.second = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string description) {
  Value v;
  v.data_ = std::move(description);
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::none;
  v.data_ = std::monostate{};
  return v;
}

Value Value::boolean(bool value) {
  Value v;
  v.kind_ = Kind::boolean;
  v.data_ = value;
  return v;
}

Value Value::integer(int64_t value) {
  Value v;
  v.kind_ = Kind::integer;
  v.data_ = value;
  return v;
}

Value Value::floating(double value) {
  Value v;
  v.kind_ = Kind::floating;
  v.data_ = value;
  return v;
}

Value Value::string(std::string value) {
  Value v;
  v.kind_ = Kind::string;
  v.data_ = std::move(value);
  return v;
}

namespace {

// A template can nest values without nesting its source (`{% set ns.x = [ns.x] %}` in a loop),
// and copying, comparing and freeing them recurses per level: 100,000 levels overflow the stack
// of a sanitizer build. Containers therefore carry their depth and stop at this one (deeper than
// any context JSON, which is bounded at kMaxJsonDepth = 256).
constexpr int kMaxValueDepth = 512;

int depth_of(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::list: return value.list_depth();
    case Value::Kind::dict:
    case Value::Kind::name_space: return value.dict_depth();
    default: return 0;
  }
}

int checked_depth(int below) {
  if (below + 1 > kMaxValueDepth) fault("value nested more than ", kMaxValueDepth, " levels deep");
  return below + 1;
}

int dict_depth_of(const DictData& data) {
  int below = 0;
  for (const auto& [key, item] : data.entries) below = std::max(below, depth_of(item));
  return checked_depth(below);
}

}  // namespace

Value Value::list(std::vector<Value> items, bool is_tuple) {
  int below = 0;
  for (const Value& item : items) below = std::max(below, depth_of(item));
  Value v;
  v.kind_ = Kind::list;
  v.data_ = std::make_shared<ListData>(ListData{std::move(items), is_tuple, checked_depth(below)});
  return v;
}

Value Value::dict(DictData data) {
  data.depth = dict_depth_of(data);
  Value v;
  v.kind_ = Kind::dict;
  v.data_ = std::make_shared<DictData>(std::move(data));
  return v;
}

Value Value::name_space(DictData data) {
  data.depth = dict_depth_of(data);
  Value v;
  v.kind_ = Kind::name_space;
  v.data_ = std::make_shared<DictData>(std::move(data));
  return v;
}

Value Value::callable(std::shared_ptr<Callable> function) {
  Value v;
  v.kind_ = Kind::callable;
  v.data_ = std::move(function);
  return v;
}

const std::string& Value::undefined_description() const {
  static const std::string kAnonymous = "value is undefined";
  if (const auto* description = std::get_if<std::string>(&data_)) return *description;
  return kAnonymous;
}

int64_t Value::as_int() const {
  if (is_bool()) return as_bool() ? 1 : 0;
  return std::get<int64_t>(data_);
}

double Value::as_double() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_int());
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean: return as_bool();
    case Kind::integer: return as_int() != 0;
    case Kind::floating: return as_double() != 0.0;
    case Kind::string: return !as_string().empty();
    case Kind::list: return !items().empty();
    case Kind::dict: return !dict_data().entries.empty();
    case Kind::name_space:
    case Kind::callable: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "NoneType";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return "str";
    case Kind::list: return is_tuple() ? "tuple" : "list";
    case Kind::dict: return "dict";
    case Kind::name_space: return "Namespace";
    case Kind::callable: return "function";
  }
  return "object";
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none: return true;
    case Value::Kind::string: return a.as_string() == b.as_string();
    case Value::Kind::list: {
      if (a.is_tuple() != b.is_tuple() || a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case Value::Kind::dict: {
      const auto& left = a.dict_data().entries;
      if (left.size() != b.dict_data().entries.size()) return false;
      for (const auto& [key, value] : left) {
        const Value* other = b.dict_data().find(key);
        if (!other || !values_equal(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::name_space: return &a.namespace_data() == &b.namespace_data();
    case Value::Kind::callable: return a.function() == b.function();
    default: return false;
  }
}

int compare_values(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    // Byte order of UTF-8 is code point order, which is what Python compares.
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i])) continue;
      return compare_values(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  if (a.is_undefined() || b.is_undefined())
    fault((a.is_undefined() ? a : b).undefined_description());
  fault("ordering comparison not supported between instances of '", a.type_name(), "' and '",
        b.type_name(), "'");
}

std::vector<Value> iterate_value(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined: return {};
    case Value::Kind::list: return value.items();
    case Value::Kind::dict: {
      std::vector<Value> keys;
      for (const auto& entry : value.dict_data().entries) keys.push_back(entry.first);
      return keys;
    }
    case Value::Kind::string: {
      std::vector<Value> characters;
      const std::string& text = value.as_string();
      const auto offsets = code_point_offsets(text);
      for (size_t i = 0; i + 1 < offsets.size(); ++i)
        characters.push_back(Value::string(text.substr(offsets[i], offsets[i + 1] - offsets[i])));
      return characters;
    }
    default: fault("'", value.type_name(), "' object is not iterable");
  }
}

int64_t value_length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined: return 0;
    case Value::Kind::string: return static_cast<int64_t>(code_point_count(value.as_string()));
    case Value::Kind::list: return static_cast<int64_t>(value.items().size());
    case Value::Kind::dict: return static_cast<int64_t>(value.dict_data().entries.size());
    default: fault("object of type '", value.type_name(), "' has no len()");
  }
}

bool value_contains(const Value& haystack, const Value& needle) {
  switch (haystack.kind()) {
    case Value::Kind::undefined: return false;
    case Value::Kind::string:
      if (!needle.is_string())
        fault("'in <string>' requires string as left operand, not ", needle.type_name());
      return haystack.as_string().find(needle.as_string()) != std::string::npos;
    case Value::Kind::list:
      for (const Value& item : haystack.items())
        if (values_equal(item, needle)) return true;
      return false;
    case Value::Kind::dict: return haystack.dict_data().find(needle) != nullptr;
    default: fault("argument of type '", haystack.type_name(), "' is not iterable");
  }
}

}  // namespace orchard::jinja
