// A streamed chunk whose JSON is the same for every token but for one string: the envelope (id,
// created, model, choice) is rendered once per stream, and each token only adds its escaped
// text between the two halves. Per token this is one string escape instead of building and
// serializing a JSON tree of a dozen nodes.
#pragma once
#include <string>
#include <string_view>

#include "server/openai_protocol.h"

namespace orchard::server {

class ChunkTemplate {
 public:
  // The string value that marks where the text goes; `shape` must hold it exactly once.
  static const char* const kSlot;

  explicit ChunkTemplate(const json& shape);
  // Appends the server-sent event "data: <shape with text in the slot>\n\n".
  void append_event(std::string& out, std::string_view text) const;

 private:
  std::string before_, after_;
};

// JSON text of `j`; partial UTF-8 (possible in logprob token strings) becomes U+FFFD instead of
// an exception.
std::string to_json_text(const json& j);

// Appends the server-sent event "data: <data>\n\n".
void append_event(std::string& out, std::string_view data);

}  // namespace orchard::server
