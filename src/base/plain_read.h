// A plain read of memory, the yardstick of the decode kernels: 64-byte loads into 4 independent
// chains and nothing else, as ../shared/tools/limits.c reads for its bandwidth. Used by
// bench/gemm_bench.cpp (one core) and `orchard bench --plain-read` (the decode's threads).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace orchard {

// 64-byte loads where the CPU has them (a clone per ISA, picked at load time): with 16-byte ones
// the load queue holds a quarter of the lines in flight, and the read measured 58 GB/s where
// limits.c reads 78-80.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "default")))
#endif
inline void plain_read(const uint8_t* bytes, size_t n) {
  using Line = uint64_t __attribute__((vector_size(64)));
  Line chain[4] = {}, line;
  for (size_t at = 0; at + 256 <= n; at += 256)
    for (int c = 0; c < 4; ++c) {
      std::memcpy(&line, bytes + at + 64 * c, 64);
      chain[c] ^= line;
    }
  const Line all = chain[0] ^ chain[1] ^ chain[2] ^ chain[3];
  volatile uint64_t sink = all[0] ^ all[7];
  (void)sink;
}

}  // namespace orchard
