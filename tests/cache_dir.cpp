// Keeps the flash layouts the suite builds (limited-memory mode, docs/flash.md) out of the user's
// cache: the test binary, and the orchard processes the CLI tests start, use a folder of their
// own, removed when the binary exits. A test that needs a particular folder passes it explicitly.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

struct SuiteCacheDir {
  std::string path;
  SuiteCacheDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "orchard-cache-XXXXXX").string();
    if (::mkdtemp(pattern.data())) {
      path = pattern;
      ::setenv("ORCHARD_CACHE_DIR", path.c_str(), 1);
    }
  }
  ~SuiteCacheDir() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove_all(path, ignored);
  }
} suite_cache_dir;

}  // namespace
