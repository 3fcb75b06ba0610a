// The parsed form of a template: expressions and statements, each remembering the template line
// it came from so that runtime errors can name it.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace orchard::jinja {

struct Expression;
using ExpressionPtr = std::unique_ptr<Expression>;

enum class ExpressionKind {
  literal,      // constant
  name,         // variable lookup
  list,         // [a, b] or (a, b)
  dict,         // {k: v}
  attribute,    // object.name
  subscript,    // object[index]
  slice,        // object[start:stop:step]
  call,         // callee(args)
  filter,       // input | name(args)
  test,         // input is name(args)
  unary,        // not / - / +
  binary,       // arithmetic, and/or, ~
  compare,      // a < b, a == b < c, x in y: items are operands, compare_ops the operators
  conditional,  // a if cond else b
};

enum class Operator {
  add, subtract, multiply, divide, floor_divide, modulo, power, concat,
  logical_and, logical_or, logical_not, negate, plus,
  equal, not_equal, less, less_equal, greater, greater_equal, in, not_in,
};

struct Arguments {
  std::vector<ExpressionPtr> positional;
  std::vector<std::pair<std::string, ExpressionPtr>> keyword;
};

struct Expression {
  ExpressionKind kind;
  int line = 0;
  Value constant;                 // literal
  std::string name;               // name, attribute, filter, test
  Operator op = Operator::add;    // unary, binary
  bool is_tuple = false;          // list
  bool negated = false;           // test: `is not`
  ExpressionPtr object;           // attribute/subscript/slice/call/filter/test/unary operand, binary left
  ExpressionPtr operand;          // subscript index, binary right, conditional's value when true
  ExpressionPtr condition;        // conditional
  ExpressionPtr otherwise;        // conditional's value when false (may be null: undefined)
  ExpressionPtr start, stop, step;  // slice bounds, each optional
  std::vector<ExpressionPtr> items;  // list items; dict keys and values interleaved; compare operands
  std::vector<Operator> compare_ops;
  Arguments arguments;            // call, filter, test
  int height = 1;                 // levels of expressions in this tree (the parser bounds it)

  Expression(ExpressionKind k, int l) : kind(k), line(l) {}
};

struct Statement;
using StatementPtr = std::unique_ptr<Statement>;
using Body = std::vector<StatementPtr>;

enum class StatementKind {
  text,         // literal output
  output,       // {{ expression }}
  if_chain,     // if / elif / else
  for_loop,
  set,          // {% set target = value %}
  set_block,    // {% set target %}...{% endset %}
  macro,
  filter_block, // {% filter name %}...{% endfilter %}
  loop_break,
  loop_continue,
  generation,   // transformers' {% generation %} marks assistant text; it renders its body
};

// Where `set` and `for` store values: one name, a namespace attribute, or several names.
struct AssignTarget {
  std::vector<std::string> names;  // several for tuple unpacking
  std::string attribute;           // set when assigning `names[0].attribute`
  bool unpack = false;             // `a, b = ...` even with one name, as in `a, = x`
};

struct MacroParameter {
  std::string name;
  ExpressionPtr default_value;  // may be null
};

struct Statement {
  StatementKind kind;
  int line = 0;
  std::string text;
  ExpressionPtr value;  // output, set, for's iterable, filter block's filter (its object is null)
  std::vector<std::pair<ExpressionPtr, Body>> branches;  // if chain
  Body body;             // for, macro, set block, filter block, generation
  Body else_body;        // if chain, for
  AssignTarget target;   // set, set block, for
  ExpressionPtr loop_filter;  // for ... if cond
  std::string macro_name;
  std::vector<MacroParameter> parameters;

  Statement(StatementKind k, int l) : kind(k), line(l) {}
};

}  // namespace orchard::jinja
