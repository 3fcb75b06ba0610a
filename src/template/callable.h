// Anything a template can call: macros, globals such as range() and namespace(), and bound
// methods such as str.split. Arguments come positional and by keyword, as in Python.
#pragma once
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace orchard::jinja {

class Interpreter;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Matches arguments to a Python-style signature: `parameter_names` in positional order. Returns
// one slot per parameter, empty where the caller passed nothing; a TemplateFault for too many
// positional arguments, unknown keywords or a parameter given twice.
std::vector<std::optional<Value>> bind_arguments(const CallArgs& args,
                                                 std::initializer_list<const char*> parameter_names,
                                                 const std::string& function_name);

class Callable {
 public:
  virtual ~Callable() = default;
  virtual std::string name() const = 0;
  // What str() shows for it.
  virtual std::string repr() const { return "<function " + name() + ">"; }
  virtual Value call(Interpreter& interpreter, const CallArgs& args) = 0;
};

// A callable made from a lambda: globals and bound methods.
class NativeFunction : public Callable {
 public:
  using Body = std::function<Value(Interpreter&, const CallArgs&)>;
  NativeFunction(std::string name, Body body) : name_(std::move(name)), body_(std::move(body)) {}
  std::string name() const override { return name_; }
  Value call(Interpreter& interpreter, const CallArgs& args) override { return body_(interpreter, args); }

 private:
  std::string name_;
  Body body_;
};

Value make_native_function(std::string name, NativeFunction::Body body);

}  // namespace orchard::jinja
