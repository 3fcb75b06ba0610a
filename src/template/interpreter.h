// Executes a parsed template against a context: jinja2's scoping (each loop iteration and macro
// call gets its own scope; namespaces carry values out), loop variables, macros, whitespace
// already resolved by the lexer. Runtime failures become orchard::Error naming the line.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "template/ast.h"
#include "template/callable.h"
#include "template/limits.h"
#include "template/value.h"

namespace orchard::jinja {

// Variables visible at one level: the globals, the context, a loop iteration, a macro call.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value value) { variables_[name] = std::move(value); }

 private:
  std::unordered_map<std::string, Value> variables_;
  std::shared_ptr<Scope> parent_;
};

class Macro;

class Interpreter {
 public:
  explicit Interpreter(const RenderLimits& limits) : limits_(limits) {}

  // Renders `body` with `context` (a dict) over the built-in globals.
  std::string render(const Body& body, const DictData& context);

  // For filters, tests and globals that call back into the template machinery.
  Value call(const Value& callee, const CallArgs& args);
  Value apply_filter(const std::string& name, const Value& input, const CallArgs& args);
  bool apply_test(const std::string& name, const Value& input, const CallArgs& args);
  const RenderLimits& limits() const { return limits_; }
  void count_step();
  void check_string_size(size_t bytes) const;

  Value invoke_macro(const Macro& macro, const CallArgs& args);

 private:
  enum class Flow { normal, break_loop, continue_loop };

  Flow execute(const Body& body, std::string& out);
  Flow execute_statement(const Statement& statement, std::string& out);
  Flow execute_for(const Statement& statement, std::string& out);
  void execute_set(const Statement& statement);
  void assign(const AssignTarget& target, const Value& value);
  std::string render_body(const Body& body);
  Value apply_filter_chain(const Expression& chain, const Value& input);

  Value evaluate(const Expression& expression);
  Value evaluate_compare(const Expression& expression);
  CallArgs evaluate_arguments(const Arguments& arguments);
  Value lookup(const std::string& name) const;

  void append_output(std::string& out, const std::string& text) const;

  RenderLimits limits_;
  std::shared_ptr<Scope> scope_;
  std::shared_ptr<Scope> root_scope_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  int current_line_ = 0;
  uintptr_t stack_base_ = 0;  // the frame address at render(), for max_stack_bytes
  std::vector<Value> filter_block_inputs_;  // rendered bodies of enclosing {% filter %}/{% set %} blocks
};

}  // namespace orchard::jinja
