#include "template/access.h"

#include "template/fault.h"
#include "template/methods.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

std::string object_label(const Value& object) { return str_cat("'", object.type_name(), " object'"); }

Value missing_attribute(const Value& object, const std::string& name) {
  return Value::undefined(object_label(object) + " has no attribute '" + name + "'");
}

}  // namespace

Value get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) fault(object.undefined_description());
  Value method = find_method(object, name);
  if (!method.is_undefined()) return method;
  if (object.is_dict()) {
    if (const Value* item = object.dict_data().find(name)) return *item;
  } else if (object.is_namespace()) {
    if (const Value* item = object.namespace_data().find(name)) return *item;
  }
  return missing_attribute(object, name);
}

Value get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fault(object.undefined_description());
  if (object.is_dict()) {
    if (const Value* item = object.dict_data().find(key)) return *item;
  } else if ((object.is_list() || object.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t index = key.as_int();
    if (object.is_list()) {
      const int64_t size = static_cast<int64_t>(object.items().size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) return object.items()[static_cast<size_t>(index)];
    } else {
      const auto offsets = code_point_offsets(object.as_string());
      const int64_t size = static_cast<int64_t>(offsets.size()) - 1;
      if (index < 0) index += size;
      if (index >= 0 && index < size) {
        const size_t begin = offsets[static_cast<size_t>(index)];
        return Value::string(object.as_string().substr(begin, offsets[static_cast<size_t>(index) + 1] - begin));
      }
    }
    return Value::undefined(object_label(object) + " has no element " + std::to_string(key.as_int()));
  }
  // jinja2 falls back to the attribute for string keys: `d['items']`, `ns['x']`.
  if (key.is_string()) return get_attribute(object, key.as_string());
  return Value::undefined(object_label(object) + " has no element");
}

Value slice_value(const Value& object, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step) {
  if (object.is_undefined()) fault(object.undefined_description());
  if (!object.is_list() && !object.is_string()) fault("'", object.type_name(), "' object is not subscriptable");
  const int64_t increment = step.value_or(1);
  if (increment == 0) fault("slice step cannot be zero");

  std::vector<size_t> offsets;
  int64_t length;
  if (object.is_string()) {
    offsets = code_point_offsets(object.as_string());
    length = static_cast<int64_t>(offsets.size()) - 1;
  } else {
    length = static_cast<int64_t>(object.items().size());
  }
  // Python's slice index adjustment: negatives count from the end, then clamp.
  auto adjust = [&](std::optional<int64_t> bound, int64_t fallback) {
    if (!bound) return fallback;
    int64_t index = *bound;
    if (index < 0) {
      index += length;
      if (index < 0) index = increment < 0 ? -1 : 0;
    } else if (index >= length) {
      index = increment < 0 ? length - 1 : length;
    }
    return index;
  };
  const int64_t first = adjust(start, increment < 0 ? length - 1 : 0);
  const int64_t last = adjust(stop, increment < 0 ? -1 : length);

  std::vector<int64_t> picked;
  if (increment > 0)
    for (int64_t i = first; i < last; i += increment) picked.push_back(i);
  else
    for (int64_t i = first; i > last; i += increment) picked.push_back(i);

  if (object.is_string()) {
    const std::string& text = object.as_string();
    if (increment == 1) {
      if (picked.empty()) return Value::string("");
      const size_t begin = offsets[static_cast<size_t>(picked.front())];
      return Value::string(text.substr(begin, offsets[static_cast<size_t>(picked.back()) + 1] - begin));
    }
    std::string out;
    for (int64_t i : picked) {
      const size_t begin = offsets[static_cast<size_t>(i)];
      out.append(text, begin, offsets[static_cast<size_t>(i) + 1] - begin);
    }
    return Value::string(std::move(out));
  }
  std::vector<Value> items;
  items.reserve(picked.size());
  for (int64_t i : picked) items.push_back(object.items()[static_cast<size_t>(i)]);
  return Value::list(std::move(items), object.is_tuple());
}

}  // namespace orchard::jinja
