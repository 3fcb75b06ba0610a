#include "kernels/packing.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// One row of one group decoded into integers, before interleaving into the tile.
struct GroupQuants {
  uint8_t u[256];          // unsigned quants, in element order
  uint16_t d = 0, dmin = 0;  // f16 bits
  uint8_t scale[16] = {}, min[16] = {};  // K-quant sub-block scales (i8 bits for Q6_K, Q3_K)
};

int64_t group_elements(PackedFormat f) {
  switch (f) {
    case PackedFormat::q4_k:
    case PackedFormat::q5_k:
    case PackedFormat::q6_k:
    case PackedFormat::q3_k:
    case PackedFormat::q2_k:
    case PackedFormat::iq4_xs: return 256;
    default: return 32;
  }
}

size_t group_bytes(PackedFormat f) {
  switch (f) {
    case PackedFormat::q4_0: return 288;
    case PackedFormat::q4_1: return 320;
    case PackedFormat::q5_0: return 352;
    case PackedFormat::q5_1: return 384;
    case PackedFormat::q8_0: return 544;
    case PackedFormat::q4_k: return 2368;
    case PackedFormat::q5_k: return 2880;
    case PackedFormat::q6_k: return 3360;
    case PackedFormat::q3_k: return 1824;
    case PackedFormat::q2_k: return 1344;
    case PackedFormat::iq4_nl: return 288;
    case PackedFormat::iq4_xs: return 2208;
  }
  return 0;
}

size_t file_block_bytes(PackedFormat f) {
  switch (f) {
    case PackedFormat::q4_0: return 18;
    case PackedFormat::q4_1: return 20;
    case PackedFormat::q5_0: return 22;
    case PackedFormat::q5_1: return 24;
    case PackedFormat::q8_0: return 34;
    case PackedFormat::q4_k: return 144;
    case PackedFormat::q5_k: return 176;
    case PackedFormat::q6_k: return 210;
    case PackedFormat::q3_k: return 110;
    case PackedFormat::q2_k: return 84;
    case PackedFormat::iq4_nl: return 18;
    case PackedFormat::iq4_xs: return 136;
  }
  return 0;
}

// The 2-bit field of element e (0..255) in Q2_K's and Q3_K's 64 quant bytes: the super-block is
// two halves of 128, each four groups of 32 in bit pairs 2g..2g+1 of 32 bytes.
int k_quant_low2(const uint8_t* qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

// The file's block layouts are documented in tensor/dequantize.cpp; these read the same bits.
void decode_group(PackedFormat f, const uint8_t* b, GroupQuants& g) {
  switch (f) {
    case PackedFormat::q4_0:
    case PackedFormat::iq4_nl:
    case PackedFormat::q4_1: {
      // Q4_1 (and Q5_1 below) have a min after the scale, kept in dmin; IQ4_NL's nibbles are
      // grid indices.
      const uint8_t* qs = b + (f == PackedFormat::q4_1 ? 4 : 2);
      g.d = load_u16(b);
      if (f == PackedFormat::q4_1) g.dmin = load_u16(b + 2);
      for (int j = 0; j < 16; ++j) {
        g.u[j] = qs[j] & 0x0f;
        g.u[j + 16] = qs[j] >> 4;
      }
      return;
    }
    case PackedFormat::q5_0:
    case PackedFormat::q5_1: {
      const uint8_t* qh = b + (f == PackedFormat::q5_1 ? 4 : 2);
      const uint8_t* qs = qh + 4;
      g.d = load_u16(b);
      if (f == PackedFormat::q5_1) g.dmin = load_u16(b + 2);
      const uint32_t high = static_cast<uint32_t>(load_u16(qh)) | static_cast<uint32_t>(load_u16(qh + 2)) << 16;
      for (int j = 0; j < 16; ++j) {
        g.u[j] = static_cast<uint8_t>((qs[j] & 0x0f) | ((high >> j) & 1) << 4);
        g.u[j + 16] = static_cast<uint8_t>((qs[j] >> 4) | ((high >> (j + 16)) & 1) << 4);
      }
      return;
    }
    case PackedFormat::q8_0:
      g.d = load_u16(b);
      for (int j = 0; j < 32; ++j) g.u[j] = static_cast<uint8_t>(b[2 + j] ^ 0x80);  // q + 128
      return;
    case PackedFormat::q4_k:
    case PackedFormat::q5_k: {
      // Q5_K is Q4_K with 32 bytes of fifth bits before the nibbles (qh: bit j of byte l is
      // bit 4 of element 32j + l).
      const bool fifth = f == PackedFormat::q5_k;
      g.d = load_u16(b);
      g.dmin = load_u16(b + 2);
      const uint8_t* sc = b + 4;
      const uint8_t* qh = b + 16;
      for (int j = 0; j < 8; ++j) {
        if (j < 4) {
          g.scale[j] = sc[j] & 0x3f;
          g.min[j] = sc[j + 4] & 0x3f;
        } else {
          g.scale[j] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4));
          g.min[j] = static_cast<uint8_t>((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
        }
        const uint8_t* q = b + (fifth ? 48 : 16) + 32 * (j / 2);
        for (int l = 0; l < 32; ++l)
          g.u[32 * j + l] =
              static_cast<uint8_t>(((q[l] >> (4 * (j % 2))) & 0x0f) | (fifth ? ((qh[l] >> j) & 1) << 4 : 0));
      }
      return;
    }
    case PackedFormat::q6_k: {
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      for (int s = 0; s < 16; ++s) g.scale[s] = b[192 + s];
      g.d = load_u16(b + 208);
      for (int half = 0; half < 2; ++half)
        for (int group = 0; group < 4; ++group)
          for (int l = 0; l < 32; ++l) {
            const int low = (ql[64 * half + 32 * (group % 2) + l] >> (4 * (group / 2))) & 0x0f;
            const int high = (qh[32 * half + l] >> (2 * group)) & 3;
            g.u[128 * half + 32 * group + l] = static_cast<uint8_t>(low | (high << 4));
          }
      return;
    }
    case PackedFormat::q3_k: {
      // u = the low 2 bits | the hmask bit << 2.
      const uint8_t* hmask = b;
      const uint8_t* qs = b + 32;
      for (int s = 0; s < 16; ++s) g.scale[s] = static_cast<uint8_t>(static_cast<int8_t>(q3_k_scale(b + 96, s)));
      g.d = load_u16(b + 108);
      for (int e = 0; e < 256; ++e)
        g.u[e] = static_cast<uint8_t>(k_quant_low2(qs, e) | ((hmask[e % 32] >> (e / 32)) & 1) << 2);
      return;
    }
    case PackedFormat::iq4_xs:
      g.d = load_u16(b);
      for (int k = 0; k < 8; ++k) {
        g.scale[k] = static_cast<uint8_t>(static_cast<int8_t>(iq4_xs_scale(b, k)));
        for (int j = 0; j < 16; ++j) {
          g.u[32 * k + j] = b[8 + 16 * k + j] & 0x0f;
          g.u[32 * k + 16 + j] = b[8 + 16 * k + j] >> 4;
        }
      }
      return;
    case PackedFormat::q2_k: {
      // The scale bytes kept whole (split by the kernel); u the 2-bit quant.
      for (int s = 0; s < 16; ++s) g.scale[s] = b[s];
      g.d = load_u16(b + 80);
      g.dmin = load_u16(b + 82);
      for (int e = 0; e < 256; ++e) g.u[e] = static_cast<uint8_t>(k_quant_low2(b + 16, e));
      return;
    }
  }
}

// Nibbles of 32 quants (low 4 bits of u[0..32)) for row r into a 256-byte Q4_0-style block.
void put_nibbles(uint8_t* dst, int r, const uint8_t* u) {
  for (int c = 0; c < 4; ++c)
    for (int i = 0; i < 4; ++i)
      dst[64 * c + 4 * r + i] = static_cast<uint8_t>((u[4 * c + i] & 0x0f) | ((u[16 + 4 * c + i] & 0x0f) << 4));
}

// Bits 2k..2k+1 of 32 quants u[0..32) for row r into 2 chunks of 64 bytes: chunk h byte 4r + i
// holds in bits 2j..2j+1 those of element 16h + 4j + i.
void put_bit_pairs(uint8_t* dst, int r, const uint8_t* u, int k) {
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) {
      uint8_t bits = 0;
      for (int j = 0; j < 4; ++j) bits |= static_cast<uint8_t>(((u[16 * h + 4 * j + i] >> (2 * k)) & 3) << (2 * j));
      dst[64 * h + 4 * r + i] = bits;
    }
}

// Bit `k` of 32 quants u[0..32) for row r into a 64-byte chunk: bit v of byte 4r + i is that of
// element 4v + i.
void put_bit_plane(uint8_t* dst, int r, const uint8_t* u, int k) {
  for (int i = 0; i < 4; ++i) {
    uint8_t bits = 0;
    for (int v = 0; v < 8; ++v) bits |= static_cast<uint8_t>(((u[4 * v + i] >> k) & 1) << v);
    dst[4 * r + i] = bits;
  }
}

void put_group(PackedFormat f, uint8_t* dst, int r, const GroupQuants& g) {
  switch (f) {
    case PackedFormat::q4_0:
    case PackedFormat::iq4_nl:
    case PackedFormat::q4_1:
      put_nibbles(dst, r, g.u);
      store_u16(dst + 256 + 2 * r, g.d);
      if (f == PackedFormat::q4_1) store_u16(dst + 288 + 2 * r, g.dmin);
      return;
    case PackedFormat::q5_0:
    case PackedFormat::q5_1:
      put_nibbles(dst, r, g.u);
      put_bit_plane(dst + 256, r, g.u, 4);
      store_u16(dst + 320 + 2 * r, g.d);
      if (f == PackedFormat::q5_1) store_u16(dst + 352 + 2 * r, g.dmin);
      return;
    case PackedFormat::q8_0:
      for (int c = 0; c < 8; ++c)
        for (int i = 0; i < 4; ++i) dst[64 * c + 4 * r + i] = g.u[4 * c + i];
      store_u16(dst + 512 + 2 * r, g.d);
      return;
    case PackedFormat::q4_k:
    case PackedFormat::q5_k:
      store_u16(dst + 2 * r, g.d);
      store_u16(dst + 32 + 2 * r, g.dmin);
      for (int j = 0; j < 8; ++j) {
        dst[64 + 16 * j + r] = g.scale[j];
        dst[192 + 16 * j + r] = g.min[j];
        put_nibbles(dst + 320 + 256 * j, r, g.u + 32 * j);
        if (f == PackedFormat::q5_k) put_bit_plane(dst + 2368 + 64 * j, r, g.u + 32 * j, 4);
      }
      return;
    case PackedFormat::q6_k:
      store_u16(dst + 2 * r, g.d);
      for (int s = 0; s < 16; ++s) dst[32 + 16 * s + r] = g.scale[s];
      for (int j = 0; j < 8; ++j) {
        uint8_t* blk = dst + 288 + 384 * j;
        const uint8_t* u = g.u + 32 * j;
        put_nibbles(blk, r, u);
        put_bit_pairs(blk + 256, r, u, 2);
      }
      return;
    case PackedFormat::q3_k:
      store_u16(dst + 2 * r, g.d);
      for (int s = 0; s < 16; ++s) dst[32 + 16 * s + r] = g.scale[s];
      for (int j = 0; j < 8; ++j) {
        put_bit_pairs(dst + 288 + 192 * j, r, g.u + 32 * j, 0);
        put_bit_plane(dst + 288 + 192 * j + 128, r, g.u + 32 * j, 2);
      }
      return;
    case PackedFormat::iq4_xs:
      store_u16(dst + 2 * r, g.d);
      for (int j = 0; j < 8; ++j) {
        dst[32 + 16 * j + r] = g.scale[j];
        put_nibbles(dst + 160 + 256 * j, r, g.u + 32 * j);
      }
      return;
    case PackedFormat::q2_k:
      store_u16(dst + 2 * r, g.d);
      store_u16(dst + 32 + 2 * r, g.dmin);
      for (int s = 0; s < 16; ++s) dst[64 + 16 * s + r] = g.scale[s];
      for (int j = 0; j < 8; ++j) put_bit_pairs(dst + 320 + 128 * j, r, g.u + 32 * j, 0);
      return;
  }
}

}  // namespace

std::optional<PackedFormat> packed_format_for(DType type) {
  switch (type) {
    case DType::Q4_0: return PackedFormat::q4_0;
    case DType::Q4_1: return PackedFormat::q4_1;
    case DType::Q5_0: return PackedFormat::q5_0;
    case DType::Q5_1: return PackedFormat::q5_1;
    case DType::Q8_0: return PackedFormat::q8_0;
    case DType::Q4_K: return PackedFormat::q4_k;
    case DType::Q5_K: return PackedFormat::q5_k;
    case DType::Q6_K: return PackedFormat::q6_k;
    case DType::Q3_K: return PackedFormat::q3_k;
    case DType::Q2_K: return PackedFormat::q2_k;
    case DType::IQ4_NL: return PackedFormat::iq4_nl;
    case DType::IQ4_XS: return PackedFormat::iq4_xs;
    default: return std::nullopt;
  }
}

PackedMatrix describe_packed(const TensorRef& w, PackedFormat format) {
  PackedMatrix p;
  p.format = format;
  p.in = w.row_length();
  p.out = w.rows();
  const int64_t ge = group_elements(format);
  if (p.in % ge != 0) fail("pack: tensor '", w.name, "' rows of ", p.in, " are not whole blocks of ", ge);
  p.tiles = (p.out + kTileRows - 1) / kTileRows;
  p.groups = p.in / ge;
  p.group_bytes = group_bytes(format);
  p.tile_bytes = static_cast<size_t>(p.groups) * p.group_bytes;
  return p;
}

PackedMatrix allocate_packed(const TensorRef& w, PackedFormat format) {
  PackedMatrix p = describe_packed(w, format);
  p.memory = allocate_weight_memory(static_cast<size_t>(p.tiles) * p.tile_bytes);
  return p;
}

// A decode streams every weight once per token: 930 MB for the 1.5B Q4_0 file, 227,000 pages of
// 4 KiB, each a TLB miss and a page walk, and each a boundary the hardware prefetchers stop at;
// in 2 MiB pages, 465. Measured with the model's matrices in one such allocation (all of it in
// huge pages: AnonHugePages 905 MB), `orchard bench -p 0 -n 128 -r 1` on the 1.5B shape, medians
// of 3 interleaved runs: Q4_0 66.5 -> 68.8 t/s, Q4_K_M 62.6 -> 64.5, q4_os 68.1 -> 71.8; pp512
// Q4_0 321 -> 334 t/s. Peak RSS unchanged.
std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t length = std::max<size_t>(page, (bytes + page - 1) / page * page);
  const size_t slack = length >= kHuge ? kHuge : 0;
  void* mem = ::mmap(nullptr, length + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  auto* begin = static_cast<uint8_t*>(mem);
  if (slack > 0) {
    // Keep the 2 MiB-aligned `length` bytes, give back the rest.
    const uintptr_t at = reinterpret_cast<uintptr_t>(mem);
    auto* aligned = reinterpret_cast<uint8_t*>((at + kHuge - 1) / kHuge * kHuge);
    const size_t before = static_cast<size_t>(aligned - begin), after = slack - before;
    if (before > 0) ::munmap(begin, before);
    if (after > 0) ::munmap(aligned + length, after);
    begin = aligned;
    ::madvise(begin, length, MADV_HUGEPAGE);  // a hint: without THP the pages stay 4 KiB
  }
  return std::shared_ptr<uint8_t>(begin, [length](uint8_t* q) { ::munmap(q, length); });
}

void pack_tiles(const TensorRef& w, PackedMatrix& p, int64_t begin, int64_t end) {
  const int64_t ge = group_elements(p.format);
  const size_t fbb = file_block_bytes(p.format);
  GroupQuants g;
  for (int64_t t = begin; t < end; ++t) {
    uint8_t* tile = p.memory.get() + static_cast<size_t>(t) * p.tile_bytes;
    std::memset(tile, 0, p.tile_bytes);
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t row = t * kTileRows + r;
      if (row >= p.out) break;
      const uint8_t* src = w.row(row);
      for (int64_t k = 0; k < p.groups; ++k) {
        decode_group(p.format, src + k * fbb, g);
        put_group(p.format, tile + k * p.group_bytes, r, g);
      }
    }
  }
  (void)ge;
}

void packed_row_to_f32(const PackedMatrix& p, int64_t row, float* out) {
  const uint8_t* tile = p.tile(row / kTileRows);
  const int r = static_cast<int>(row % kTileRows);
  // Element 4c + i of a 32-element nibble block sits in chunk c (low nibble) and element
  // 16 + 4c + i in the high nibble of the same byte.
  auto nibble = [&](const uint8_t* blk, int e) {
    const uint8_t byte = blk[64 * ((e % 16) / 4) + 4 * r + e % 4];
    return e < 16 ? byte & 0x0f : byte >> 4;
  };
  // Bit k of element e from a bit-plane chunk (put_bit_plane), and its 2 bits 2k..2k+1 from a
  // pair of chunks (put_bit_pairs).
  auto plane = [&](const uint8_t* chunk, int e, int k) { return ((chunk[4 * r + e % 4] >> (e / 4)) & 1) << k; };
  auto fifth = [&](const uint8_t* chunk, int e) { return plane(chunk, e, 4); };
  // The i8 scale of sub-block k of the K-quants that keep them as bytes (Q6_K, Q3_K, IQ4_XS).
  auto i8_scale = [&](const uint8_t* group, int k) {
    return static_cast<float>(static_cast<int8_t>(group[32 + 16 * k + r]));
  };
  auto pair = [&](const uint8_t* chunks, int e, int k) {
    return ((chunks[64 * (e / 16) + 4 * r + e % 4] >> (2 * ((e % 16) / 4))) & 3) << (2 * k);
  };
  for (int64_t g = 0; g < p.groups; ++g) {
    const uint8_t* grp = tile + g * p.group_bytes;
    switch (p.format) {
      case PackedFormat::q4_0: {
        const float d = f16_to_f32(load_u16(grp + 256 + 2 * r));
        for (int e = 0; e < 32; ++e) *out++ = static_cast<float>(nibble(grp, e) - 8) * d;
        break;
      }
      case PackedFormat::q5_0: {
        const float d = f16_to_f32(load_u16(grp + 320 + 2 * r));
        for (int e = 0; e < 32; ++e) *out++ = static_cast<float>((nibble(grp, e) | fifth(grp + 256, e)) - 16) * d;
        break;
      }
      case PackedFormat::q4_1: {
        const float d = f16_to_f32(load_u16(grp + 256 + 2 * r)), m = f16_to_f32(load_u16(grp + 288 + 2 * r));
        for (int e = 0; e < 32; ++e) *out++ = static_cast<float>(nibble(grp, e)) * d + m;
        break;
      }
      case PackedFormat::q5_1: {
        const float d = f16_to_f32(load_u16(grp + 320 + 2 * r)), m = f16_to_f32(load_u16(grp + 352 + 2 * r));
        for (int e = 0; e < 32; ++e) *out++ = static_cast<float>(nibble(grp, e) | fifth(grp + 256, e)) * d + m;
        break;
      }
      case PackedFormat::q8_0: {
        const float d = f16_to_f32(load_u16(grp + 512 + 2 * r));
        for (int e = 0; e < 32; ++e)
          *out++ = static_cast<float>(static_cast<int>(grp[64 * (e / 4) + 4 * r + e % 4]) - 128) * d;
        break;
      }
      case PackedFormat::q4_k:
      case PackedFormat::q5_k: {
        const float d = f16_to_f32(load_u16(grp + 2 * r)), dmin = f16_to_f32(load_u16(grp + 32 + 2 * r));
        for (int j = 0; j < 8; ++j) {
          const float step = d * static_cast<float>(grp[64 + 16 * j + r]);
          const float offset = dmin * static_cast<float>(grp[192 + 16 * j + r]);
          const uint8_t* high = grp + 2368 + 64 * j;
          for (int e = 0; e < 32; ++e) {
            const int q = nibble(grp + 320 + 256 * j, e) | (p.format == PackedFormat::q5_k ? fifth(high, e) : 0);
            *out++ = step * static_cast<float>(q) - offset;
          }
        }
        break;
      }
      case PackedFormat::q6_k: {
        const float d = f16_to_f32(load_u16(grp + 2 * r));
        for (int j = 0; j < 8; ++j) {
          const uint8_t* blk = grp + 288 + 384 * j;
          for (int e = 0; e < 32; ++e) {
            const int q = (nibble(blk, e) | pair(blk + 256, e, 2)) - 32;
            *out++ = d * i8_scale(grp, 2 * j + e / 16) * static_cast<float>(q);
          }
        }
        break;
      }
      case PackedFormat::q3_k: {
        const float d = f16_to_f32(load_u16(grp + 2 * r));
        for (int j = 0; j < 8; ++j) {
          const uint8_t* blk = grp + 288 + 192 * j;
          for (int e = 0; e < 32; ++e) {
            const float step = d * i8_scale(grp, 2 * j + e / 16);
            *out++ = step * static_cast<float>((pair(blk, e, 0) | plane(blk + 128, e, 2)) - 4);
          }
        }
        break;
      }
      case PackedFormat::iq4_nl: {
        const float d = f16_to_f32(load_u16(grp + 256 + 2 * r));
        for (int e = 0; e < 32; ++e) *out++ = d * static_cast<float>(kIq4Values[nibble(grp, e)]);
        break;
      }
      case PackedFormat::iq4_xs: {
        const float d = f16_to_f32(load_u16(grp + 2 * r));
        for (int j = 0; j < 8; ++j) {
          const float step = d * i8_scale(grp, j);
          for (int e = 0; e < 32; ++e) *out++ = step * static_cast<float>(kIq4Values[nibble(grp + 160 + 256 * j, e)]);
        }
        break;
      }
      case PackedFormat::q2_k: {
        const float d = f16_to_f32(load_u16(grp + 2 * r)), dmin = f16_to_f32(load_u16(grp + 32 + 2 * r));
        for (int j = 0; j < 8; ++j)
          for (int e = 0; e < 32; ++e) {
            const uint8_t scale_min = grp[64 + 16 * (2 * j + e / 16) + r];
            const float step = d * static_cast<float>(scale_min & 0x0f), offset = dmin * static_cast<float>(scale_min >> 4);
            *out++ = step * static_cast<float>(pair(grp + 320 + 128 * j, e, 0)) - offset;
          }
        break;
      }
    }
  }
}

size_t PackedWeights::bytes() const {
  size_t n = 0;
  for (const auto& [key, p] : by_data_) n += static_cast<size_t>(p.tiles) * p.tile_bytes;
  return n;
}

}  // namespace orchard
