// A plain read of memory, the yardstick of the decode kernels: 64-byte loads into 4 independent
// chains and nothing else, as ../shared/tools/limits.c reads for its bandwidth. Used by
// bench/gemm_bench.cpp (one core) and `orchard bench --plain-read` (the decode's threads).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace orchard {

// 64-byte loads where the CPU has them (a clone per ISA, picked at load time), as limits.c's. The
// 16-byte loads of a build without AVX-512 read less in the 45 GB/s state of this machine
// (medians of 40 reads of 928 MB on 2 threads, alternated: 45.9 and 46.2 GB/s against 42.2 and
// 43.4) and the same in a 60 GB/s one. The bytes must start on a 64-byte boundary: loads that
// straddle two lines read 10% less (44.5-46.2 GB/s against 39.7-40.5).
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
