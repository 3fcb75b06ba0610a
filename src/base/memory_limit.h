// How much memory this process may use at most, for refusing an allocation that cannot succeed
// before it is tried: a KV cache for a context of 10^12 tokens, a model whose header claims
// millions of layers. Failing early lets the error name the option or file field responsible
// instead of ending in std::bad_alloc ("out of memory", exit 3) or the OOM killer.
#pragma once
#include <cstdint>
#include <string>

namespace orchard {

// The smallest of: physical memory, the address-space and data-segment limits (ulimit -v, -d) and
// the cgroup v2 memory limit of this process. Read once and cached.
uint64_t memory_limit_bytes();

// "1.5 GiB", "300 MiB", "12 KiB", "512 bytes".
std::string human_bytes(uint64_t bytes);

// Saturating arithmetic for sizes computed from untrusted counts.
inline uint64_t saturating_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
inline uint64_t saturating_add(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

}  // namespace orchard
