#include "template/interpreter.h"

#include "base/error.h"
#include "template/access.h"
#include "template/fault.h"
#include "template/filters.h"
#include "template/globals.h"
#include "template/is_tests.h"
#include "template/operators.h"
#include "template/python_format.h"

namespace orchard::jinja {

const Value* Scope::find(const std::string& name) const {
  for (const Scope* scope = this; scope; scope = scope->parent_.get()) {
    const auto it = scope->variables_.find(name);
    if (it != scope->variables_.end()) return &it->second;
  }
  return nullptr;
}

// A {% macro %}: calling it renders its body in a fresh scope whose parent is the scope it was
// defined in, so it sees that scope's variables as they are at call time (as jinja2 does).
class Macro : public Callable {
 public:
  Macro(const Statement& definition, std::weak_ptr<Scope> defined_in)
      : definition_(definition), defined_in_(std::move(defined_in)) {}
  std::string name() const override { return definition_.macro_name; }
  std::string repr() const override { return "<Macro '" + definition_.macro_name + "'>"; }
  Value call(Interpreter& interpreter, const CallArgs& args) override { return interpreter.invoke_macro(*this, args); }

  const Statement& definition() const { return definition_; }
  std::shared_ptr<Scope> defined_in() const { return defined_in_.lock(); }

 private:
  const Statement& definition_;
  // Weak: the scope holds the macro, and a strong pointer back would leak the pair.
  std::weak_ptr<Scope> defined_in_;
};

namespace {

// Restores the current scope when a loop iteration or macro call ends, even by exception.
class ScopeSwitch {
 public:
  ScopeSwitch(std::shared_ptr<Scope>& slot, std::shared_ptr<Scope> replacement)
      : slot_(slot), saved_(std::move(slot)) {
    slot_ = std::move(replacement);
  }
  ~ScopeSwitch() { slot_ = std::move(saved_); }

 private:
  std::shared_ptr<Scope>& slot_;
  std::shared_ptr<Scope> saved_;
};

std::optional<int64_t> slice_bound(const Value& bound) {
  if (bound.is_undefined() || bound.is_none()) return std::nullopt;
  if (!bound.is_int() && !bound.is_bool()) fault("slice indices must be integers or None, not ", bound.type_name());
  return bound.as_int();
}

}  // namespace

std::string Interpreter::render(const Body& body, const DictData& context) {
  auto globals = std::make_shared<Scope>(nullptr);
  for (const auto& [name, value] : builtin_globals().entries) globals->set(name.as_string(), value);
  root_scope_ = std::make_shared<Scope>(globals);
  for (const auto& [name, value] : context.entries)
    if (name.is_string()) root_scope_->set(name.as_string(), value);
  scope_ = root_scope_;
  steps_ = 0;
  call_depth_ = 0;
  stack_base_ = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  try {
    std::string out;
    if (execute(body, out) != Flow::normal) fault("'break' or 'continue' outside a loop");
    return out;
  } catch (const TemplateFault& problem) {
    fail("template line ", current_line_, ": ", problem.what());
  }
}

// Every statement and expression passes here, so the stack check sees each level of recursion.
void Interpreter::count_step() {
  if (++steps_ > limits_.max_steps)
    fault("template exceeded ", limits_.max_steps, " evaluation steps (runaway loop?)");
  const uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const uintptr_t used = here < stack_base_ ? stack_base_ - here : here - stack_base_;
  if (used > limits_.max_stack_bytes)
    fault("template nested too deeply: evaluating it would use more than ", limits_.max_stack_bytes >> 10,
          " KiB of stack (blocks, macro calls and expressions together)");
}

void Interpreter::check_string_size(size_t bytes) const {
  if (bytes > limits_.max_string_bytes) fault("template output would exceed ", limits_.max_string_bytes, " bytes");
}

void Interpreter::append_output(std::string& out, const std::string& text) const {
  check_string_size(out.size() + text.size());
  out += text;
}

Interpreter::Flow Interpreter::execute(const Body& body, std::string& out) {
  for (const auto& statement : body) {
    const Flow flow = execute_statement(*statement, out);
    if (flow != Flow::normal) return flow;
  }
  return Flow::normal;
}

Interpreter::Flow Interpreter::execute_statement(const Statement& statement, std::string& out) {
  current_line_ = statement.line;
  count_step();
  switch (statement.kind) {
    case StatementKind::text: append_output(out, statement.text); return Flow::normal;
    case StatementKind::output: append_output(out, python_str(evaluate(*statement.value))); return Flow::normal;
    case StatementKind::if_chain:
      for (const auto& [condition, body] : statement.branches)
        if (evaluate(*condition).truthy()) return execute(body, out);
      return execute(statement.else_body, out);
    case StatementKind::for_loop: return execute_for(statement, out);
    case StatementKind::set: execute_set(statement); return Flow::normal;
    case StatementKind::set_block: {
      Value text = Value::string(render_body(statement.body));
      if (statement.value) text = apply_filter_chain(*statement.value, text);
      assign(statement.target, text);
      return Flow::normal;
    }
    case StatementKind::macro:
      scope_->set(statement.macro_name, Value::callable(std::make_shared<Macro>(statement, scope_)));
      return Flow::normal;
    case StatementKind::filter_block: {
      const Value text = Value::string(render_body(statement.body));
      append_output(out, python_str(apply_filter_chain(*statement.value, text)));
      return Flow::normal;
    }
    case StatementKind::generation: return execute(statement.body, out);
    case StatementKind::loop_break: return Flow::break_loop;
    case StatementKind::loop_continue: return Flow::continue_loop;
  }
  return Flow::normal;
}

std::string Interpreter::render_body(const Body& body) {
  std::string text;
  if (execute(body, text) != Flow::normal) fault("'break' or 'continue' outside a loop");
  return text;
}

Value Interpreter::apply_filter_chain(const Expression& chain, const Value& input) {
  filter_block_inputs_.push_back(input);
  try {
    Value result = evaluate(chain);
    filter_block_inputs_.pop_back();
    return result;
  } catch (...) {
    filter_block_inputs_.pop_back();
    throw;
  }
}

Interpreter::Flow Interpreter::execute_for(const Statement& statement, std::string& out) {
  const Value iterable = evaluate(*statement.value);
  std::vector<Value> items = iterate_value(iterable);

  if (statement.loop_filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      count_step();
      ScopeSwitch iteration(scope_, std::make_shared<Scope>(scope_));
      assign(statement.target, item);
      if (evaluate(*statement.loop_filter).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }

  if (items.empty()) {
    current_line_ = statement.line;
    return execute(statement.else_body, out);
  }

  const int64_t length = static_cast<int64_t>(items.size());
  // loop.cycle is made once per loop and reads the current index through a shared counter.
  auto current_index = std::make_shared<int64_t>(0);
  const Value cycle = make_native_function("loop.cycle", [current_index](Interpreter&, const CallArgs& args) {
    if (args.positional.empty()) fault("loop.cycle() needs at least one value");
    return args.positional[static_cast<size_t>(*current_index) % args.positional.size()];
  });
  for (int64_t index = 0; index < length; ++index) {
    count_step();
    *current_index = index;
    ScopeSwitch iteration(scope_, std::make_shared<Scope>(scope_));
    // Keys are distinct, so entries are appended directly rather than through DictData::set.
    DictData loop;
    loop.entries.reserve(12);
    auto add = [&loop](const char* key, Value value) { loop.entries.emplace_back(Value::string(key), std::move(value)); };
    add("index", Value::integer(index + 1));
    add("index0", Value::integer(index));
    add("revindex", Value::integer(length - index));
    add("revindex0", Value::integer(length - index - 1));
    add("first", Value::boolean(index == 0));
    add("last", Value::boolean(index == length - 1));
    add("length", Value::integer(length));
    add("depth", Value::integer(1));
    add("depth0", Value::integer(0));
    add("previtem", index > 0 ? items[static_cast<size_t>(index - 1)] : Value::undefined());
    add("nextitem", index + 1 < length ? items[static_cast<size_t>(index + 1)] : Value::undefined());
    add("cycle", cycle);
    scope_->set("loop", Value::dict(std::move(loop)));
    assign(statement.target, items[static_cast<size_t>(index)]);
    const Flow flow = execute(statement.body, out);
    if (flow == Flow::break_loop) break;
  }
  return Flow::normal;
}

void Interpreter::execute_set(const Statement& statement) { assign(statement.target, evaluate(*statement.value)); }

void Interpreter::assign(const AssignTarget& target, const Value& value) {
  if (!target.attribute.empty()) {
    const Value object = lookup(target.names[0]);
    if (!object.is_namespace())
      fault("cannot set attribute '", target.attribute, "' on '", target.names[0], "': only a namespace() object can be assigned to");
    object.namespace_data().set(Value::string(target.attribute), value);
    return;
  }
  if (!target.unpack) {
    scope_->set(target.names[0], value);
    return;
  }
  if (value.is_undefined()) fault(value.undefined_description());
  const std::vector<Value> parts = iterate_value(value);
  if (parts.size() != target.names.size())
    fault(parts.size() > target.names.size() ? "too many" : "not enough", " values to unpack (expected ",
          target.names.size(), ", got ", parts.size(), ")");
  for (size_t i = 0; i < parts.size(); ++i) scope_->set(target.names[i], parts[i]);
}

Value Interpreter::lookup(const std::string& name) const {
  if (const Value* found = scope_->find(name)) return *found;
  return Value::undefined("'" + name + "' is undefined");
}

Value Interpreter::invoke_macro(const Macro& macro, const CallArgs& args) {
  const Statement& definition = macro.definition();
  if (call_depth_ >= limits_.max_call_depth)
    fault("macro calls nested more than ", limits_.max_call_depth, " deep (runaway recursion in '", definition.macro_name, "'?)");
  const auto& parameters = definition.parameters;
  if (args.positional.size() > parameters.size())
    fault("macro '", definition.macro_name, "' takes not more than ", parameters.size(), " argument(s)");

  std::shared_ptr<Scope> parent = macro.defined_in();
  if (!parent) parent = root_scope_;
  ScopeSwitch call_scope(scope_, std::make_shared<Scope>(parent));
  std::vector<bool> bound(parameters.size(), false);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    scope_->set(parameters[i].name, args.positional[i]);
    bound[i] = true;
  }
  for (const auto& [name, value] : args.keyword) {
    size_t i = 0;
    while (i < parameters.size() && parameters[i].name != name) ++i;
    if (i == parameters.size()) fault("macro '", definition.macro_name, "' has no parameter named '", name, "'");
    if (bound[i]) fault("macro '", definition.macro_name, "' got multiple values for parameter '", name, "'");
    scope_->set(name, value);
    bound[i] = true;
  }
  // Defaults are evaluated at call time inside the call's scope, so they can use earlier parameters.
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (bound[i]) continue;
    scope_->set(parameters[i].name, parameters[i].default_value
                                        ? evaluate(*parameters[i].default_value)
                                        : Value::undefined("parameter '" + parameters[i].name + "' was not provided"));
  }
  ++call_depth_;
  struct DepthRestore {
    int& depth;
    ~DepthRestore() { --depth; }
  } restore{call_depth_};
  return Value::string(render_body(definition.body));
}

Value Interpreter::call(const Value& callee, const CallArgs& args) {
  if (callee.is_undefined()) fault(callee.undefined_description());
  if (!callee.is_callable()) fault("'", callee.type_name(), "' object is not callable");
  return callee.function()->call(*this, args);
}

Value Interpreter::apply_filter(const std::string& name, const Value& input, const CallArgs& args) {
  const FilterFunction filter = find_filter(name);
  if (!filter) fault("unknown filter '", name, "'");
  return filter(*this, input, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& input, const CallArgs& args) {
  const TestFunction test = find_test(name);
  if (!test) fault("unknown test '", name, "'");
  return test(*this, input, args);
}

CallArgs Interpreter::evaluate_arguments(const Arguments& arguments) {
  CallArgs args;
  for (const auto& positional : arguments.positional) args.positional.push_back(evaluate(*positional));
  for (const auto& [name, keyword] : arguments.keyword) args.keyword.emplace_back(name, evaluate(*keyword));
  return args;
}

Value Interpreter::evaluate_compare(const Expression& expression) {
  Value left = evaluate(*expression.items[0]);
  for (size_t i = 0; i < expression.compare_ops.size(); ++i) {
    Value right = evaluate(*expression.items[i + 1]);
    bool holds = false;
    switch (expression.compare_ops[i]) {
      case Operator::equal: holds = values_equal(left, right); break;
      case Operator::not_equal: holds = !values_equal(left, right); break;
      case Operator::less: holds = compare_values(left, right) < 0; break;
      case Operator::less_equal: holds = compare_values(left, right) <= 0; break;
      case Operator::greater: holds = compare_values(left, right) > 0; break;
      case Operator::greater_equal: holds = compare_values(left, right) >= 0; break;
      case Operator::in: holds = value_contains(right, left); break;
      case Operator::not_in: holds = !value_contains(right, left); break;
      default: fault("bad comparison operator");
    }
    if (!holds) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::evaluate(const Expression& expression) {
  current_line_ = expression.line;
  count_step();
  switch (expression.kind) {
    case ExpressionKind::literal: return expression.constant;
    case ExpressionKind::name: return lookup(expression.name);
    case ExpressionKind::list: {
      std::vector<Value> items;
      items.reserve(expression.items.size());
      for (const auto& item : expression.items) items.push_back(evaluate(*item));
      return Value::list(std::move(items), expression.is_tuple);
    }
    case ExpressionKind::dict: {
      DictData dict;
      for (size_t i = 0; i + 1 < expression.items.size(); i += 2) {
        Value key = evaluate(*expression.items[i]);
        if (key.is_list() || key.is_dict() || key.is_namespace()) fault("unhashable type: '", key.type_name(), "'");
        dict.set(key, evaluate(*expression.items[i + 1]));
      }
      return Value::dict(std::move(dict));
    }
    case ExpressionKind::attribute: return get_attribute(evaluate(*expression.object), expression.name);
    case ExpressionKind::subscript: {
      const Value object = evaluate(*expression.object);
      return get_item(object, evaluate(*expression.operand));
    }
    case ExpressionKind::slice: {
      const Value object = evaluate(*expression.object);
      auto bound = [&](const ExpressionPtr& part) {
        return part ? slice_bound(evaluate(*part)) : std::nullopt;
      };
      const auto start = bound(expression.start);
      const auto stop = bound(expression.stop);
      const auto step = bound(expression.step);
      return slice_value(object, start, stop, step);
    }
    case ExpressionKind::call: {
      const Value callee = evaluate(*expression.object);
      const CallArgs args = evaluate_arguments(expression.arguments);
      const int line = expression.line;
      Value result = call(callee, args);
      current_line_ = line;
      return result;
    }
    case ExpressionKind::filter: {
      Value input = expression.object ? evaluate(*expression.object) : filter_block_inputs_.back();
      const CallArgs args = evaluate_arguments(expression.arguments);
      current_line_ = expression.line;
      return apply_filter(expression.name, input, args);
    }
    case ExpressionKind::test: {
      const Value input = evaluate(*expression.object);
      const CallArgs args = evaluate_arguments(expression.arguments);
      current_line_ = expression.line;
      return Value::boolean(apply_test(expression.name, input, args) != expression.negated);
    }
    case ExpressionKind::unary: return unary_operation(expression.op, evaluate(*expression.object));
    case ExpressionKind::binary: {
      Value left = evaluate(*expression.object);
      if (expression.op == Operator::logical_and) return left.truthy() ? evaluate(*expression.operand) : left;
      if (expression.op == Operator::logical_or) return left.truthy() ? left : evaluate(*expression.operand);
      const Value right = evaluate(*expression.operand);
      current_line_ = expression.line;
      return binary_operation(expression.op, left, right, limits_);
    }
    case ExpressionKind::compare: return evaluate_compare(expression);
    case ExpressionKind::conditional:
      if (evaluate(*expression.condition).truthy()) return evaluate(*expression.operand);
      if (expression.otherwise) return evaluate(*expression.otherwise);
      return Value::undefined("the conditional expression had no else branch");
  }
  fault("unknown expression");
}

}  // namespace orchard::jinja
