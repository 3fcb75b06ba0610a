// Where tests find their data: the shared oracles beside the checkout and the repo itself.
#pragma once
#include <string>

namespace orchard::test {

// ../shared, or $ORCHARD_SHARED when set.
std::string shared_dir();
std::string shared_path(const std::string& relative);
std::string source_path(const std::string& relative);
// The built `orchard` binary, for tests that drive the CLI.
std::string cli_path();

}  // namespace orchard::test
