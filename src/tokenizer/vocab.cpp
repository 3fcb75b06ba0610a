#include "tokenizer/vocab.h"

namespace orchard {

void Vocab::set(int32_t id, std::string text) {
  if (size_t(id) >= texts_.size()) texts_.resize(size_t(id) + 1);
  ids_.emplace(text, id);
  texts_[size_t(id)] = std::move(text);
}

std::optional<int32_t> Vocab::find(std::string_view text) const {
  auto it = ids_.find(text);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace orchard
