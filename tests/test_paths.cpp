#include "test_paths.h"

#include <cstdlib>

namespace orchard::test {

std::string shared_dir() {
  if (const char* env = std::getenv("ORCHARD_SHARED"); env && *env) return env;
  return ORCHARD_SHARED_DIR_DEFAULT;
}

std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

std::string source_path(const std::string& relative) {
  return std::string(ORCHARD_SOURCE_DIR) + "/" + relative;
}

// $ORCHARD_CLI overrides, to run the CLI tests against another build (e.g. one of an older
// commit, to see a new test fail there).
std::string cli_path() {
  if (const char* env = std::getenv("ORCHARD_CLI"); env && *env) return env;
  return ORCHARD_CLI_PATH;
}

}  // namespace orchard::test
