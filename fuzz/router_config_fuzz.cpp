// The router's configuration (router/config.h) from arbitrary bytes: parsed or refused with an
// orchard::Error, never a crash; what parses is written and read back to the same configuration.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "router/config.h"

using namespace orchard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  router::RouterConfig config;
  try {
    config = router::parse_router_config(fuzz::as_text(data, size), "fuzz");
  } catch (const Error&) {
    return 0;
  }
  const nlohmann::json written = router::to_json(config);
  if (router::to_json(router::parse_router_config(written.dump(), "fuzz")) != written) std::abort();
  return 0;
}
