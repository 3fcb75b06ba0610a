// Stop strings on streamed text: text is released only once it cannot be the start of a stop
// string, and generation ends at the first complete stop string (which is not released).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace orchard {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);
  // Appends generated text; returns what can be released now.
  std::string push(std::string_view text);
  // The held-back tail once generation ends without a stop string.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace orchard
