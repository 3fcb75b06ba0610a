// The prompts file of `orchard distill collect` (distill/collect.h): the input, written to a
// scratch file, goes to distill::read_prompts. What it returns: one id (a string or an integer)
// per prompt, no id twice, and exactly one of a string prompt and a messages array.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "distill/collect.h"
#include "fuzz_support.h"
#include "orchard/error.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::ScratchDir::get().write("prompts.jsonl", fuzz::as_text(data, size));
  std::vector<distill::Prompt> prompts;
  try {
    prompts = distill::read_prompts(path);
  } catch (const Error&) {
    return 0;
  }
  std::set<std::string> ids;
  for (const distill::Prompt& p : prompts) {
    if (!p.id.is_string() && !p.id.is_number_integer()) std::abort();
    if (!ids.insert(p.id.dump()).second) std::abort();
    if (p.prompt.is_string() == p.messages.is_array()) std::abort();
    if (!p.prompt.is_null() && !p.prompt.is_string()) std::abort();
    if (!p.messages.is_null() && !p.messages.is_array()) std::abort();
  }
  return 0;
}
