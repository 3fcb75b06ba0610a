#include "template/parser.h"

#include <algorithm>
#include <set>

#include "base/error.h"

namespace orchard::jinja {

namespace {

// Nesting beyond this (parentheses, unary chains, blocks) is refused rather than risking the
// native stack on a hostile template.
constexpr int kMaxNesting = 128;

// Flat chains (`1 + 1 + ...`, `x|upper|upper...`, `x.a.a...`) are parsed by loops, not recursion,
// but each link adds a level to the tree that evaluation and destruction then recurse through:
// 50,000 links overflowed the native stack. Every node's height is therefore checked as it is
// built. The longest chain in the shared chat templates is under 20 links.
constexpr int kMaxExpressionHeight = 256;

// Tags jinja2 knows that this interpreter does not implement, so the error can say so.
const std::set<std::string> kUnsupportedTags = {"call",  "include", "import", "from", "extends", "block",
                                                "with",  "autoescape", "do", "trans", "endcall", "endblock"};

struct OpenBlock {
  std::string tag;  // "for", "if" ... empty at top level
  int line = 0;
  std::vector<std::string> stops;  // tags that end or continue this block
};

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Body parse() {
    std::string stop;
    return parse_body(OpenBlock{}, stop);
  }

 private:
  class NestingGuard {
   public:
    NestingGuard(Parser& parser) : parser_(parser) {
      if (++parser_.depth_ > kMaxNesting) parser_.fail_here("template nested too deeply (more than ", kMaxNesting, " levels)");
    }
    ~NestingGuard() { --parser_.depth_; }

   private:
    Parser& parser_;
  };

  const Token& current() const { return tokens_[pos_]; }
  const Token& peek(size_t ahead = 1) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& advance() {
    const Token& token = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return token;
  }

  bool at_op(const char* op) const { return current().kind == TokenKind::op && current().value == op; }
  bool at_name(const char* name) const { return current().kind == TokenKind::name && current().value == name; }
  bool skip_op(const char* op) {
    if (!at_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!at_name(name)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail_here("expected '", op, "', found ", describe_token(current()));
  }
  std::string expect_name(const char* what) {
    if (current().kind != TokenKind::name) fail_here("expected ", what, ", found ", describe_token(current()));
    return advance().value;
  }
  void expect_block_end(const std::string& tag) {
    if (current().kind != TokenKind::block_end)
      fail_here("expected '%}' to end the '", tag, "' tag, found ", describe_token(current()));
    advance();
  }

  template <typename... Parts>
  [[noreturn]] void fail_here(Parts&&... parts) const {
    fail("template line ", current().line, ", column ", current().column, ": ", std::forward<Parts>(parts)...);
  }

  // ---- statements ----

  // Parses until one of `block.stops` is met as a tag name; consumes `{%` and that name and
  // stores it in `stop` (the caller parses the rest of that tag).
  Body parse_body(const OpenBlock& block, std::string& stop) {
    NestingGuard guard(*this);
    Body body;
    while (true) {
      const Token& token = current();
      switch (token.kind) {
        case TokenKind::text: {
          auto statement = std::make_unique<Statement>(StatementKind::text, token.line);
          statement->text = token.value;
          body.push_back(std::move(statement));
          advance();
          break;
        }
        case TokenKind::variable_begin: {
          advance();
          auto statement = std::make_unique<Statement>(StatementKind::output, token.line);
          statement->value = parse_tuple(true);
          if (current().kind != TokenKind::variable_end)
            fail_here("expected '}}', found ", describe_token(current()));
          advance();
          body.push_back(std::move(statement));
          break;
        }
        case TokenKind::block_begin: {
          advance();
          const std::string tag = expect_name("a tag name after '{%'");
          if (std::find(block.stops.begin(), block.stops.end(), tag) != block.stops.end()) {
            stop = tag;
            return body;
          }
          body.push_back(parse_statement(tag, token.line, block));
          break;
        }
        case TokenKind::end_of_input:
          if (!block.tag.empty())
            fail_here("unexpected end of template: the '", block.tag, "' tag opened at line ", block.line,
                      " was never closed (expected '", block.stops.back(), "')");
          return body;
        default: fail_here("unexpected ", describe_token(token), " outside a tag");
      }
    }
  }

  StatementPtr parse_statement(const std::string& tag, int line, const OpenBlock& enclosing) {
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "filter") return parse_filter_block(line);
    if (tag == "generation") {
      auto statement = std::make_unique<Statement>(StatementKind::generation, line);
      expect_block_end(tag);
      std::string stop;
      statement->body = parse_body(OpenBlock{tag, line, {"endgeneration"}}, stop);
      expect_block_end(stop);
      return statement;
    }
    if (tag == "break" || tag == "continue") {
      auto statement = std::make_unique<Statement>(tag == "break" ? StatementKind::loop_break : StatementKind::loop_continue, line);
      expect_block_end(tag);
      return statement;
    }
    --pos_;  // point errors at the tag name
    if (kUnsupportedTags.count(tag)) fail_here("the '", tag, "' tag is not supported by this template engine");
    if (!enclosing.tag.empty())
      fail_here("unexpected tag '", tag, "' (expected '", enclosing.stops.back(), "' to close the '", enclosing.tag,
                "' opened at line ", enclosing.line, ")");
    fail_here("unknown tag '", tag, "'");
  }

  StatementPtr parse_if(int line) {
    auto statement = std::make_unique<Statement>(StatementKind::if_chain, line);
    ExpressionPtr condition = parse_tuple(true);
    while (true) {
      expect_block_end("if");
      std::string stop;
      Body body = parse_body(OpenBlock{"if", line, {"elif", "else", "endif"}}, stop);
      statement->branches.emplace_back(std::move(condition), std::move(body));
      if (stop == "elif") {
        condition = parse_tuple(true);
        continue;
      }
      if (stop == "else") {
        expect_block_end("else");
        statement->else_body = parse_body(OpenBlock{"if", line, {"endif"}}, stop);
      }
      expect_block_end("endif");
      return statement;
    }
  }

  AssignTarget parse_assign_target(bool allow_attribute) {
    AssignTarget target;
    const bool parenthesized = skip_op("(");
    target.names.push_back(expect_name("a variable name"));
    if (allow_attribute && !parenthesized && at_op(".")) {
      advance();
      target.attribute = expect_name("an attribute name after '.'");
      return target;
    }
    while (skip_op(",")) {
      target.unpack = true;
      if (current().kind != TokenKind::name) break;  // trailing comma
      target.names.push_back(advance().value);
    }
    if (parenthesized) {
      expect_op(")");
      target.unpack = true;
    }
    for (const auto& name : target.names)
      if (name == "true" || name == "false" || name == "none" || name == "True" || name == "False" || name == "None")
        fail_here("cannot assign to constant '", name, "'");
    return target;
  }

  StatementPtr parse_for(int line) {
    auto statement = std::make_unique<Statement>(StatementKind::for_loop, line);
    statement->target = parse_assign_target(false);
    if (!skip_name("in")) fail_here("expected 'in' in the 'for' tag, found ", describe_token(current()));
    statement->value = parse_tuple(false);  // no `a if b else c` here: `if` starts the loop filter
    if (skip_name("if")) statement->loop_filter = parse_expression();
    if (at_name("recursive")) fail_here("recursive for loops are not supported");
    expect_block_end("for");
    std::string stop;
    statement->body = parse_body(OpenBlock{"for", line, {"else", "endfor"}}, stop);
    if (stop == "else") {
      expect_block_end("else");
      statement->else_body = parse_body(OpenBlock{"for", line, {"endfor"}}, stop);
    }
    expect_block_end("endfor");
    return statement;
  }

  StatementPtr parse_set(int line) {
    AssignTarget target = parse_assign_target(true);
    if (skip_op("=")) {
      auto statement = std::make_unique<Statement>(StatementKind::set, line);
      statement->target = std::move(target);
      statement->value = parse_tuple(true);
      expect_block_end("set");
      return statement;
    }
    if (target.unpack || !target.attribute.empty())
      fail_here("a block 'set' assigns one plain name; expected '=' here");
    auto statement = std::make_unique<Statement>(StatementKind::set_block, line);
    statement->target = std::move(target);
    if (at_op("|")) statement->value = parse_filter_chain(nullptr);
    expect_block_end("set");
    std::string stop;
    statement->body = parse_body(OpenBlock{"set", line, {"endset"}}, stop);
    expect_block_end("endset");
    return statement;
  }

  StatementPtr parse_macro(int line) {
    auto statement = std::make_unique<Statement>(StatementKind::macro, line);
    statement->macro_name = expect_name("a macro name");
    expect_op("(");
    while (!skip_op(")")) {
      if (!statement->parameters.empty()) expect_op(",");
      if (skip_op(")")) break;
      MacroParameter parameter;
      parameter.name = expect_name("a macro parameter name");
      if (skip_op("=")) parameter.default_value = parse_expression();
      else if (!statement->parameters.empty() && statement->parameters.back().default_value)
        fail_here("macro parameter '", parameter.name, "' without a default follows one with a default");
      statement->parameters.push_back(std::move(parameter));
    }
    expect_block_end("macro");
    std::string stop;
    statement->body = parse_body(OpenBlock{"macro", line, {"endmacro"}}, stop);
    if (current().kind == TokenKind::name && current().value == statement->macro_name) advance();
    expect_block_end("endmacro");
    return statement;
  }

  StatementPtr parse_filter_block(int line) {
    auto statement = std::make_unique<Statement>(StatementKind::filter_block, line);
    statement->value = parse_filter_chain(nullptr, /*leading_pipe=*/false);
    expect_block_end("filter");
    std::string stop;
    statement->body = parse_body(OpenBlock{"filter", line, {"endfilter"}}, stop);
    expect_block_end("endfilter");
    return statement;
  }

  // `| a(x) | b` applied to `input` (null for filter blocks and block sets, whose input is the
  // rendered body).
  ExpressionPtr parse_filter_chain(ExpressionPtr input, bool leading_pipe = true) {
    bool first = true;
    while (first ? (leading_pipe ? skip_op("|") : true) : skip_op("|")) {
      first = false;
      input = parse_filter(std::move(input));
    }
    return input;
  }

  // ---- expressions ----

  // Records a finished node's height (one more than its highest operand) and refuses a tree
  // taller than kMaxExpressionHeight before it can grow further.
  ExpressionPtr bounded(ExpressionPtr node) {
    int below = 0;
    auto see = [&below](const ExpressionPtr& child) {
      if (child) below = std::max(below, child->height);
    };
    for (const ExpressionPtr* child : {&node->object, &node->operand, &node->condition, &node->otherwise,
                                       &node->start, &node->stop, &node->step})
      see(*child);
    for (const ExpressionPtr& item : node->items) see(item);
    for (const ExpressionPtr& argument : node->arguments.positional) see(argument);
    for (const auto& keyword : node->arguments.keyword) see(keyword.second);
    node->height = below + 1;
    if (node->height > kMaxExpressionHeight)
      fail_here("expression nested too deeply (more than ", kMaxExpressionHeight,
                " levels of operators, filters, attributes or calls)");
    return node;
  }

  // Comma-separated expressions make a tuple, as in `{% set a, b = 1, 2 %}`.
  ExpressionPtr parse_tuple(bool with_conditional) {
    const int line = current().line;
    std::vector<ExpressionPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
        if (current().kind == TokenKind::variable_end || current().kind == TokenKind::block_end || at_op(")") ||
            at_op("]") || at_name("in") || at_name("if"))
          break;
      }
      items.push_back(with_conditional ? parse_expression() : parse_or());
    }
    if (!is_tuple) return std::move(items[0]);
    auto tuple = std::make_unique<Expression>(ExpressionKind::list, line);
    tuple->is_tuple = true;
    tuple->items = std::move(items);
    return bounded(std::move(tuple));
  }

  ExpressionPtr parse_expression() {
    NestingGuard guard(*this);
    ExpressionPtr value = parse_or();
    while (at_name("if")) {
      const int line = advance().line;
      auto conditional = std::make_unique<Expression>(ExpressionKind::conditional, line);
      conditional->condition = parse_or();
      if (skip_name("else")) conditional->otherwise = parse_expression();
      conditional->operand = std::move(value);
      value = bounded(std::move(conditional));
    }
    return value;
  }

  ExpressionPtr make_binary(Operator op, int line, ExpressionPtr left, ExpressionPtr right) {
    auto node = std::make_unique<Expression>(ExpressionKind::binary, line);
    node->op = op;
    node->object = std::move(left);
    node->operand = std::move(right);
    return bounded(std::move(node));
  }

  ExpressionPtr parse_or() {
    ExpressionPtr left = parse_and();
    while (at_name("or")) {
      const int line = advance().line;
      left = make_binary(Operator::logical_or, line, std::move(left), parse_and());
    }
    return left;
  }

  ExpressionPtr parse_and() {
    ExpressionPtr left = parse_not();
    while (at_name("and")) {
      const int line = advance().line;
      left = make_binary(Operator::logical_and, line, std::move(left), parse_not());
    }
    return left;
  }

  ExpressionPtr parse_not() {
    if (at_name("not")) {
      NestingGuard guard(*this);
      const int line = advance().line;
      auto node = std::make_unique<Expression>(ExpressionKind::unary, line);
      node->op = Operator::logical_not;
      node->object = parse_not();
      return bounded(std::move(node));
    }
    return parse_compare();
  }

  ExpressionPtr parse_compare() {
    const int line = current().line;
    ExpressionPtr first = parse_math1();
    std::unique_ptr<Expression> compare;
    while (true) {
      Operator op;
      if (at_op("==")) op = Operator::equal;
      else if (at_op("!=")) op = Operator::not_equal;
      else if (at_op("<")) op = Operator::less;
      else if (at_op("<=")) op = Operator::less_equal;
      else if (at_op(">")) op = Operator::greater;
      else if (at_op(">=")) op = Operator::greater_equal;
      else if (at_name("in")) op = Operator::in;
      else if (at_name("not") && peek().kind == TokenKind::name && peek().value == "in") {
        advance();
        op = Operator::not_in;
      } else break;
      advance();
      if (!compare) {
        compare = std::make_unique<Expression>(ExpressionKind::compare, line);
        compare->items.push_back(std::move(first));
      }
      compare->compare_ops.push_back(op);
      compare->items.push_back(parse_math1());
    }
    if (compare) return bounded(std::move(compare));
    return first;
  }

  ExpressionPtr parse_math1() {
    ExpressionPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& token = advance();
      left = make_binary(token.value == "+" ? Operator::add : Operator::subtract, token.line, std::move(left),
                         parse_concat());
    }
    return left;
  }

  ExpressionPtr parse_concat() {
    ExpressionPtr left = parse_math2();
    while (at_op("~")) {
      const int line = advance().line;
      left = make_binary(Operator::concat, line, std::move(left), parse_math2());
    }
    return left;
  }

  ExpressionPtr parse_math2() {
    ExpressionPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& token = advance();
      const Operator op = token.value == "*"   ? Operator::multiply
                          : token.value == "/" ? Operator::divide
                          : token.value == "//" ? Operator::floor_divide
                                                : Operator::modulo;
      left = make_binary(op, token.line, std::move(left), parse_pow());
    }
    return left;
  }

  ExpressionPtr parse_pow() {
    ExpressionPtr left = parse_unary(true);
    while (at_op("**")) {
      const int line = advance().line;
      left = make_binary(Operator::power, line, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExpressionPtr parse_unary(bool with_filter) {
    NestingGuard guard(*this);
    ExpressionPtr node;
    if (at_op("-") || at_op("+")) {
      const Token& token = advance();
      node = std::make_unique<Expression>(ExpressionKind::unary, token.line);
      node->op = token.value == "-" ? Operator::negate : Operator::plus;
      node->object = parse_unary(false);
      node = bounded(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expression(std::move(node));
    return node;
  }

  ExpressionPtr make_literal(Value value, int line) {
    auto node = std::make_unique<Expression>(ExpressionKind::literal, line);
    node->constant = std::move(value);
    return node;
  }

  ExpressionPtr parse_primary() {
    const Token& token = current();
    const int line = token.line;
    switch (token.kind) {
      case TokenKind::name: {
        advance();
        if (token.value == "true" || token.value == "True") return make_literal(Value::boolean(true), line);
        if (token.value == "false" || token.value == "False") return make_literal(Value::boolean(false), line);
        if (token.value == "none" || token.value == "None") return make_literal(Value::none(), line);
        auto node = std::make_unique<Expression>(ExpressionKind::name, line);
        node->name = token.value;
        return node;
      }
      case TokenKind::string: {
        std::string text;
        while (current().kind == TokenKind::string) text += advance().value;  // adjacent literals join
        return make_literal(Value::string(std::move(text)), line);
      }
      case TokenKind::integer: advance(); return make_literal(Value::integer(token.int_value), line);
      case TokenKind::floating: advance(); return make_literal(Value::floating(token.float_value), line);
      case TokenKind::op:
        if (token.value == "(") {
          advance();
          if (skip_op(")")) {
            auto empty = std::make_unique<Expression>(ExpressionKind::list, line);
            empty->is_tuple = true;
            return empty;
          }
          ExpressionPtr inner = parse_tuple(true);
          expect_op(")");
          return inner;
        }
        if (token.value == "[") {
          advance();
          auto list = std::make_unique<Expression>(ExpressionKind::list, line);
          while (!skip_op("]")) {
            if (!list->items.empty()) {
              expect_op(",");
              if (skip_op("]")) break;
            }
            list->items.push_back(parse_expression());
          }
          return bounded(std::move(list));
        }
        if (token.value == "{") {
          advance();
          auto dict = std::make_unique<Expression>(ExpressionKind::dict, line);
          while (!skip_op("}")) {
            if (!dict->items.empty()) {
              expect_op(",");
              if (skip_op("}")) break;
            }
            dict->items.push_back(parse_expression());
            expect_op(":");
            dict->items.push_back(parse_expression());
          }
          return bounded(std::move(dict));
        }
        break;
      default: break;
    }
    fail_here("expected an expression, found ", describe_token(token));
  }

  ExpressionPtr parse_postfix(ExpressionPtr node) {
    while (true) {
      if (at_op(".")) {
        const int line = advance().line;
        if (current().kind == TokenKind::integer) {
          auto item = std::make_unique<Expression>(ExpressionKind::subscript, line);
          item->object = std::move(node);
          item->operand = make_literal(Value::integer(advance().int_value), line);
          node = bounded(std::move(item));
          continue;
        }
        auto attribute = std::make_unique<Expression>(ExpressionKind::attribute, line);
        attribute->object = std::move(node);
        attribute->name = expect_name("an attribute name after '.'");
        node = bounded(std::move(attribute));
      } else if (at_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExpressionPtr parse_subscript(ExpressionPtr object) {
    const int line = advance().line;  // [
    std::vector<ExpressionPtr> parts;
    bool is_tuple = false;
    ExpressionPtr single;
    while (true) {
      if (!parts.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
        if (at_op("]")) break;
      }
      parts.push_back(parse_subscribed(object, line));
    }
    expect_op("]");
    if (parts.size() == 1 && !is_tuple) {
      ExpressionPtr part = std::move(parts[0]);
      if (part->kind == ExpressionKind::slice && !part->object) {
        part->object = std::move(object);
        return bounded(std::move(part));
      }
      auto item = std::make_unique<Expression>(ExpressionKind::subscript, line);
      item->object = std::move(object);
      item->operand = std::move(part);
      return bounded(std::move(item));
    }
    fail_here("multi-dimensional subscripts are not supported");
  }

  // One subscript part: an expression or a slice `start:stop:step` (returned with a null object).
  ExpressionPtr parse_subscribed(const ExpressionPtr&, int line) {
    ExpressionPtr start;
    if (!at_op(":")) {
      start = parse_expression();
      if (!at_op(":")) return start;
    }
    advance();  // first ':'
    auto slice = std::make_unique<Expression>(ExpressionKind::slice, line);
    slice->start = std::move(start);
    if (!at_op(":") && !at_op("]") && !at_op(",")) slice->stop = parse_expression();
    if (skip_op(":"))
      if (!at_op("]") && !at_op(",")) slice->step = parse_expression();
    return slice;
  }

  Arguments parse_call_arguments() {
    expect_op("(");
    Arguments arguments;
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      first = false;
      if (at_op("*") || at_op("**")) fail_here("*args and **kwargs in calls are not supported");
      if (current().kind == TokenKind::name && peek().kind == TokenKind::op && peek().value == "=") {
        std::string name = advance().value;
        advance();
        arguments.keyword.emplace_back(std::move(name), parse_expression());
      } else {
        if (!arguments.keyword.empty()) fail_here("positional argument follows keyword argument");
        arguments.positional.push_back(parse_expression());
      }
    }
    return arguments;
  }

  ExpressionPtr parse_call(ExpressionPtr callee) {
    auto call = std::make_unique<Expression>(ExpressionKind::call, current().line);
    call->object = std::move(callee);
    call->arguments = parse_call_arguments();
    return bounded(std::move(call));
  }

  std::string parse_dotted_name(const char* what) {
    std::string name = expect_name(what);
    while (at_op(".") && peek().kind == TokenKind::name) {
      advance();
      name += "." + advance().value;
    }
    return name;
  }

  ExpressionPtr parse_filter(ExpressionPtr input) {
    auto filter = std::make_unique<Expression>(ExpressionKind::filter, current().line);
    filter->object = std::move(input);
    filter->name = parse_dotted_name("a filter name after '|'");
    if (at_op("(")) filter->arguments = parse_call_arguments();
    return bounded(std::move(filter));
  }

  ExpressionPtr parse_filter_expression(ExpressionPtr node) {
    while (true) {
      if (at_op("|")) {
        advance();
        node = parse_filter(std::move(node));
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExpressionPtr parse_test(ExpressionPtr input) {
    const int line = advance().line;  // is
    auto test = std::make_unique<Expression>(ExpressionKind::test, line);
    test->object = std::move(input);
    test->negated = skip_name("not");
    test->name = parse_dotted_name("a test name after 'is'");
    const Token& next = current();
    if (at_op("(")) {
      test->arguments = parse_call_arguments();
    } else if ((next.kind == TokenKind::name || next.kind == TokenKind::string || next.kind == TokenKind::integer ||
                next.kind == TokenKind::floating || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and") && !at_name("if")) {
      // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
      if (at_name("is")) fail_here("tests cannot be chained with 'is'");
      test->arguments.positional.push_back(parse_postfix(parse_primary()));
    }
    return bounded(std::move(test));
  }

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::vector<Token>& tokens) { return Parser(tokens).parse(); }

}  // namespace orchard::jinja
