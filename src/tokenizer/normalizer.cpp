#include "tokenizer/normalizer.h"

#include "tokenizer/nfc.h"

namespace orchard {

std::string_view Normalizer::apply(std::string_view text, std::string& storage) const {
  std::string_view current = text;
  std::string scratch;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kNfc:
        if (unicode::is_nfc_quick(current)) continue;
        scratch = unicode::to_nfc(current);
        break;
      case Step::kPrepend:
        if (current.empty()) continue;
        scratch.clear();
        scratch.reserve(step.a.size() + current.size());
        scratch.append(step.a).append(current);
        break;
      case Step::kReplace: {
        if (current.find(step.a) == std::string_view::npos) continue;
        scratch.clear();
        scratch.reserve(current.size() + current.size() / 4 * step.b.size());
        size_t pos = 0;
        for (size_t hit; (hit = current.find(step.a, pos)) != std::string_view::npos;
             pos = hit + step.a.size()) {
          scratch.append(current.substr(pos, hit - pos)).append(step.b);
        }
        scratch.append(current.substr(pos));
        break;
      }
    }
    storage.swap(scratch);
    current = storage;
  }
  return current;
}

}  // namespace orchard
