// The template value model: what Python objects look like to a chat template rendered by jinja2
// (None, bool, int, float, str, list/tuple, dict, jinja2's Undefined and Namespace, callables),
// with Python's truthiness and equality.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace orchard::jinja {

class Value;
class Callable;

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;  // only changes how the value prints: (1, 2) rather than [1, 2]
  int depth = 1;          // containers nested in it, itself included (set by Value::list)
};

// An insertion-ordered dict, like Python's. Keys compare with Python ==, so lookups are linear:
// chat-template dicts are small.
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;  // as ListData's, when the dict or namespace was made (a namespace changes later)

  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;
  void set(const Value& key, Value value);
};

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, name_space, callable };

  Value() = default;  // undefined
  static Value undefined() { return Value(); }
  static Value undefined(std::string description);
  static Value none();
  static Value boolean(bool value);
  static Value integer(int64_t value);
  static Value floating(double value);
  static Value string(std::string value);
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(DictData data);
  static Value name_space(DictData data);  // jinja2's namespace(): the one mutable object
  static Value callable(std::shared_ptr<Callable> function);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_int() const { return kind_ == Kind::integer; }
  bool is_float() const { return kind_ == Kind::floating; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_list() const { return kind_ == Kind::list; }
  bool is_dict() const { return kind_ == Kind::dict; }
  bool is_namespace() const { return kind_ == Kind::name_space; }
  bool is_callable() const { return kind_ == Kind::callable; }
  // Python's numbers.Number: bool counts, as bool is a subclass of int.
  bool is_number() const { return is_int() || is_float() || is_bool(); }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const;     // int or bool
  double as_double() const;   // int, bool or float
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const std::vector<Value>& items() const { return std::get<std::shared_ptr<ListData>>(data_)->items; }
  bool is_tuple() const { return std::get<std::shared_ptr<ListData>>(data_)->is_tuple; }
  const DictData& dict_data() const { return *std::get<std::shared_ptr<DictData>>(data_); }
  int list_depth() const { return std::get<std::shared_ptr<ListData>>(data_)->depth; }
  int dict_depth() const { return std::get<std::shared_ptr<DictData>>(data_)->depth; }
  DictData& namespace_data() const { return *std::get<std::shared_ptr<DictData>>(data_); }
  const std::shared_ptr<Callable>& function() const { return std::get<std::shared_ptr<Callable>>(data_); }
  // What an undefined value stands for, for error messages ("'foo' is undefined").
  const std::string& undefined_description() const;

  bool truthy() const;
  // Python's type name, for error messages.
  std::string type_name() const;

 private:
  Kind kind_ = Kind::undefined;
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<ListData>,
               std::shared_ptr<DictData>, std::shared_ptr<Callable>>
      data_;
};

// Python ==. jinja2's Undefined equals only another Undefined.
bool values_equal(const Value& a, const Value& b);
// Python's <, <=, ... ordering: negative, zero or positive; a TemplateFault for unorderable types.
int compare_values(const Value& a, const Value& b);
// What `for x in value` visits: list items, dict keys, string characters; undefined is empty.
std::vector<Value> iterate_value(const Value& value);
// Python's len(); undefined has length 0 as in jinja2.
int64_t value_length(const Value& value);
// Python's `needle in haystack`.
bool value_contains(const Value& haystack, const Value& needle);

}  // namespace orchard::jinja
