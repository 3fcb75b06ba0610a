#include "template/json_value.h"

#include "base/error.h"
#include "base/json_depth.h"

namespace orchard::jinja {

namespace {

Value convert(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxJsonDepth) fail("template context JSON is nested more than ", kMaxJsonDepth, " levels deep");
  switch (json.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(json.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(json.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t value = json.get<uint64_t>();
      // Python ints are unbounded; past int64 the nearest float is the closest we can keep.
      if (value > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(value));
      return Value::integer(static_cast<int64_t>(value));
    }
    case nlohmann::json::value_t::number_float: return Value::floating(json.get<double>());
    case nlohmann::json::value_t::string: return Value::string(json.get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(convert(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      DictData dict;
      dict.entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) dict.entries.emplace_back(Value::string(key), convert(item, depth + 1));
      return Value::dict(std::move(dict));
    }
    default: fail("template context holds a JSON value of unsupported type '", json.type_name(), "'");
  }
}

}  // namespace

Value value_from_json(const nlohmann::ordered_json& json) { return convert(json, 0); }

}  // namespace orchard::jinja
