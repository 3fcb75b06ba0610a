#include "server/chunk_template.h"

#include "base/error.h"

namespace orchard::server {

// Control characters cannot come from the protocol's own fields, so the marker cannot collide.
const char* const ChunkTemplate::kSlot = "\x01orchard-chunk-text\x01";

std::string to_json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void append_event(std::string& out, std::string_view data) {
  out += "data: ";
  out += data;
  out += "\n\n";
}

ChunkTemplate::ChunkTemplate(const json& shape) {
  const std::string text = to_json_text(shape), slot = to_json_text(json(kSlot));
  const size_t at = text.find(slot);
  if (at == std::string::npos || text.find(slot, at + 1) != std::string::npos)
    fail("chunk template: the shape must hold the text slot exactly once");
  before_ = "data: " + text.substr(0, at);
  after_ = text.substr(at + slot.size()) + "\n\n";
}

void ChunkTemplate::append_event(std::string& out, std::string_view text) const {
  out += before_;
  // The same escaping (and replacement of invalid UTF-8) as the whole chunk's dump would apply.
  out += to_json_text(json(std::string(text)));
  out += after_;
}

}  // namespace orchard::server
