#include "base/memory_limit.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace orchard {
namespace {

uint64_t probe() {
  uint64_t limit = UINT64_MAX;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) limit = saturating_mul(static_cast<uint64_t>(pages), static_cast<uint64_t>(page));
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl {};
    if (::getrlimit(resource, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      limit = std::min<uint64_t>(limit, static_cast<uint64_t>(rl.rlim_cur));
  }
  // cgroup v2: "max" or a byte count, for the cgroup at the root of this process's namespace.
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string text;
  if (cgroup >> text && !text.empty() && text != "max") {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (end && *end == '\0' && v > 0) limit = std::min<uint64_t>(limit, v);
  }
  return limit;
}

}  // namespace

uint64_t memory_limit_bytes() {
  static const uint64_t limit = probe();
  return limit;
}

std::string human_bytes(uint64_t bytes) {
  static const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char text[48];
  if (u == 0) std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
  else std::snprintf(text, sizeof text, "%.1f %s", v, units[u]);
  return text;
}

}  // namespace orchard
