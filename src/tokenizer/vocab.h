// The token strings of a vocabulary, by id and by text.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace orchard {

class Vocab {
 public:
  // Sets the text of `id`, growing the table. Ids never named stay empty strings and are not
  // found by text. A text given twice keeps its first id.
  void set(int32_t id, std::string text);
  std::optional<int32_t> find(std::string_view text) const;
  const std::string& text(int32_t id) const { return texts_[size_t(id)]; }
  bool contains_id(int32_t id) const { return id >= 0 && size_t(id) < texts_.size(); }
  int64_t size() const { return int64_t(texts_.size()); }
  const std::vector<std::string>& texts() const { return texts_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<std::string> texts_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
};

}  // namespace orchard
