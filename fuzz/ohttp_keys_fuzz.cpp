// The Oblivious HTTP key configuration parsers (RFC 9458 §3): the input is one key configuration
// (what parse_key_config reads) and an `application/ohttp-keys` list (parse_key_configs), as a
// client fetches them from the gateway. Every refusal must be an OhttpError (an orchard::Error).
// What parses is encoded again and must parse to the same fields; a single configuration, which
// parse_key_config reads exactly, must also encode to the input's own bytes.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "cloud/ohttp.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;

namespace {

bool same(const KeyConfig& a, const KeyConfig& b) {
  return a.key_id == b.key_id && a.kem_id == b.kem_id && a.public_key == b.public_key && a.suites == b.suites;
}

void check_one(ByteView input) {
  const KeyConfig config = parse_key_config(input);
  const Bytes encoded = encode_key_config(config);
  if (encoded != Bytes(input.begin(), input.end())) std::abort();  // parse_key_config reads every byte
  KeyConfig again;
  try {
    again = parse_key_config(encoded);
  } catch (const Error&) {
    std::abort();  // what was parsed must encode to something that parses
  }
  if (!same(config, again)) std::abort();
}

void check_list(ByteView input) {
  const std::vector<KeyConfig> configs = parse_key_configs(input);
  const Bytes encoded = encode_key_configs(configs);  // without the skipped (unsupported KEM) ones
  if (encoded.size() > input.size()) std::abort();
  std::vector<KeyConfig> again;
  try {
    again = parse_key_configs(encoded);
  } catch (const Error&) {
    std::abort();
  }
  if (again.size() != configs.size()) std::abort();
  for (size_t i = 0; i < configs.size(); ++i)
    if (!same(configs[i], again[i])) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  try {
    check_one(input);
  } catch (const Error&) {
  }
  try {
    check_list(input);
  } catch (const Error&) {
  }
  return 0;
}
