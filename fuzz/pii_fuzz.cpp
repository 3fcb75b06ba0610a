// PII detection and redaction (router/pii.h) on arbitrary text: the matches are in bounds, sorted
// and disjoint; redacting them and restoring the result gives the text back; restoring the same
// redacted text as a stream cut at two fuzzer-chosen places gives the same; no placeholder occurs
// in the original text.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "router/pii.h"

using namespace orchard::router;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(orchard::fuzz::as_text(data, size));
  const std::vector<PiiMatch> found = find_pii(text);
  size_t last_end = 0;
  for (const PiiMatch& m : found) {
    if (m.start < last_end || m.start >= m.end || m.end > text.size()) std::abort();
    last_end = m.end;
  }
  const Redaction r = redact(text, found);
  if (restore(r.text, r) != text) std::abort();
  for (const auto& [placeholder, original] : r.placeholders)
    if (text.find(placeholder) != std::string::npos) std::abort();
  const size_t a = size ? data[0] % (r.text.size() + 1) : 0, b = size > 1 ? a + data[1] % (r.text.size() - a + 1) : a;
  RestoreStream stream(r);
  std::string streamed = stream.feed(std::string_view(r.text).substr(0, a));
  streamed += stream.feed(std::string_view(r.text).substr(a, b - a));
  streamed += stream.feed(std::string_view(r.text).substr(b));
  streamed += stream.finish();
  if (streamed != text) std::abort();
  return 0;
}
