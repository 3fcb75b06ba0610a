// The --memory-budget option: a byte count written as a number with an optional unit suffix.
#pragma once
#include <cstdint>
#include <string>

namespace orchard {

// "800M", "1.5G", "512K", "1073741824", "2GiB" -> bytes (K, M, G, T are powers of 1024; a
// trailing "B" or "iB" is accepted). Throws orchard::Error naming --memory-budget for anything
// else: empty, negative, zero, unknown suffix, or too large.
uint64_t parse_memory_budget(const std::string& text);

}  // namespace orchard
