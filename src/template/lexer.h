// Splits template source into tokens the way jinja2's lexer does under transformers' settings
// (trim_blocks and lstrip_blocks on): text between tags with whitespace control already applied,
// tag delimiters, and the expression tokens inside tags. Comments and {% raw %} are resolved here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace orchard::jinja {

enum class TokenKind {
  text,            // literal output between tags
  variable_begin,  // {{
  variable_end,    // }}
  block_begin,     // {%
  block_end,       // %}
  name,
  string,          // value: the decoded literal
  integer,
  floating,
  op,              // operators and punctuation: + - ( ) [ ] . | , : == ...
  end_of_input,
};

struct Token {
  TokenKind kind = TokenKind::end_of_input;
  std::string value;  // text, name, decoded string or operator spelling
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1;
  int column = 1;
};

// Throws orchard::Error naming the line and column for unclosed tags, comments, strings or a
// character that starts no token.
std::vector<Token> tokenize_template(const std::string& source);

// What a token looks like in an error message.
std::string describe_token(const Token& token);

}  // namespace orchard::jinja
