// Little-endian fields inside quantized blocks. Blocks sit at any byte offset in a file, so
// fields are assembled from bytes: no alignment is assumed and the host's byte order is irrelevant.
#pragma once
#include <cstdint>

#include "base/half.h"

namespace orchard {

inline uint16_t load_u16_le(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

inline uint32_t load_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline void store_u16_le(uint8_t* p, uint16_t value) {
  p[0] = static_cast<uint8_t>(value & 0xff);
  p[1] = static_cast<uint8_t>(value >> 8);
}

inline float load_f16_le(const uint8_t* p) { return f16_to_f32(load_u16_le(p)); }

}  // namespace orchard
