// Weights repacked once at load into the layout the int8 kernels stream: tiles of 16 output rows
// whose quants are interleaved so that one 64-byte load feeds one VNNI dot-product instruction
// for all 16 rows (4 consecutive inputs per row, one row per 32-bit lane).
//
// Every packed format is lossless: the kernels compute exactly the weights that
// dequantize_row() defines, as unsigned integers u with a per-group scale and offset:
//   weight = scale * (u - offset)      (offset: 8 for Q4_0, 16 for Q5_0, 128 for Q8_0, 32 for Q6_K,
//                                       4 for Q3_K)
//   weight = scale * u - min           (Q4_K, Q5_K, Q2_K)
//   weight = scale * u + min           (Q4_1, Q5_1)
//   weight = scale * grid[u]           (IQ4_NL, IQ4_XS: kIq4Values, tensor/dequantize.h)
// and each format keeps the size of the file's blocks, so that the packed copy replaces the
// mapped weights in memory instead of adding to them, but for the K-quants whose 6-bit scales
// are stored as bytes (Q4_K, Q5_K: 2-3% more; Q3_K: 114 bytes per 110; IQ4_XS: 138 per 136).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>

#include "tensor/tensor.h"

namespace orchard {

enum class PackedFormat { q4_0, q8_0, q4_k, q6_k, q5_0, q5_k, q4_1, q5_1, q3_k, q2_k, iq4_nl, iq4_xs };

constexpr int64_t kTileRows = 16;   // output rows per tile
constexpr int64_t kBlock = 32;      // inputs per activation block (and per 4/8-bit weight block)

// Layout of one tile (16 rows r) for input block b of 32 (Q4_0, Q8_0) or super-block of 256
// (Q4_K, Q6_K). "Chunk" c is 64 bytes: byte 4r + i = element 4c + i of row r, i < 4.
//   Q4_0, per block, 288 bytes: [0,256) 4 nibble chunks: chunk c holds elements 4c+i in its low
//        nibbles and 16+4c+i in its high nibbles; [256,288) f16 scale per row.
//   Q5_0, per block, 352 bytes: [0,256) the low 4 bits as Q4_0's nibbles; [256,320) one chunk
//        of fifth bits: byte 4r + i holds in bit v that of element 4v + i; [320,352) f16 scale.
//   Q4_1, per block, 320 bytes: Q4_0's, then [288,320) the f16 min per row.
//   Q5_1, per block, 384 bytes: Q5_0's, then [352,384) the f16 min per row.
//   Q8_0, per block, 544 bytes: [0,512) 8 chunks of u = q + 128; [512,544) f16 scale per row.
//   Q4_K, per super-block, 2368 bytes: [0,32) f16 d per row; [32,64) f16 dmin per row;
//        [64,192) u8 scale of sub-block j for row r at 16j + r; [192,320) u8 min likewise;
//        [320,2368) 8 sub-blocks of 256 bytes laid out as Q4_0's nibbles.
//   Q5_K, per super-block, 2880 bytes: [0,2368) as Q4_K (the low 4 bits); [2368,2880) 8
//        fifth-bit chunks as Q5_0's, one per sub-block.
//   Q6_K, per super-block, 3360 bytes: [0,32) f16 d per row; [32,288) i8 scale of 16-element
//        sub-block s for row r at 16s + r; [288,3360) 8 blocks of 384 bytes: 256 bytes of low
//        nibbles as Q4_0, then 2 chunks of high 2-bit pairs: chunk h byte 4r + i holds, in bits
//        2j..2j+1, the high bits of element 16h + 4j + i.
//   Q3_K, per super-block, 1824 bytes: [0,288) as Q6_K's (d, then i8 scales, bias removed);
//        [288,1824) 8 blocks of 192 bytes: 2 chunks of the low 2-bit pairs laid out as Q6_K's
//        high pairs, then one chunk of the third bits laid out as Q5_0's fifth bits.
//   Q2_K, per super-block, 1344 bytes: [0,32) f16 d per row; [32,64) f16 dmin per row;
//        [64,320) the file's byte of 16-element sub-block s (scale: low nibble, min: high) for
//        row r at 16s + r; [320,1344) 8 blocks of 2 chunks of bit pairs, as Q3_K's low bits.
//   IQ4_NL, per block, 288 bytes: as Q4_0 (the nibbles index the grid).
//   IQ4_XS, per super-block, 2208 bytes: [0,32) f16 d per row; [32,160) i8 scale (bias removed)
//        of 32-element sub-block j for row r at 16j + r; [160,2208) 8 sub-blocks as IQ4_NL's
//        nibbles.
struct PackedMatrix {
  PackedFormat format;
  int64_t in = 0, out = 0;   // {in, out} as the TensorRef
  int64_t tiles = 0;         // ceil(out / 16); rows past `out` in the last tile are zero
  int64_t groups = 0;        // blocks (Q4_0, Q8_0) or super-blocks (K-quants) per row
  size_t group_bytes = 0;    // bytes of one group of one tile
  size_t tile_bytes = 0;     // groups * group_bytes
  std::shared_ptr<uint8_t> memory;  // anonymous, 64-byte aligned: tiles * tile_bytes
  // Its activations are quantized in one int8 level instead of two (QuantizedActivations in
  // isa_kernels.h): set at load for the matrices whose products measured precise enough so
  // (model/activation_levels.h); ORCHARD_ACTIVATIONS=residual|int8 overrides it.
  bool single_level = false;

  const uint8_t* tile(int64_t t) const { return memory.get() + static_cast<size_t>(t) * tile_bytes; }
};

// The packed format for a weight type, if the int8 kernels have one.
std::optional<PackedFormat> packed_format_for(DType type);

// Repacks `w` (any type packed_format_for accepts, `in` a multiple of its block). Rows of tile
// ranges are independent: `pack_tiles` fills tiles [begin, end) so that loading can run in parallel.
PackedMatrix allocate_packed(const TensorRef& w, PackedFormat format);
// Anonymous memory for packed weights, zeroed: pages of its own (not the heap), returned to the
// OS when the last owner goes; from 2 MiB up, 2 MiB-aligned and asked for in transparent huge
// pages (packing.cpp says why). A model's matrices share one (pack_weights), each
// PackedMatrix::memory pointing into it.
std::shared_ptr<uint8_t> allocate_weight_memory(size_t bytes);
// The layout allocate_packed would give `w`, without memory: limited-memory mode packs into
// buffers of its own (bytes: tiles * tile_bytes).
PackedMatrix describe_packed(const TensorRef& w, PackedFormat format);
void pack_tiles(const TensorRef& w, PackedMatrix& p, int64_t begin, int64_t end);

// Row `row` of a packed matrix as float32, bit-identical to dequantize_row() of the original
// (same float operations in the same order): the tied token embedding is looked up here, so the
// file pages the packed copy replaced are never faulted back in.
void packed_row_to_f32(const PackedMatrix& p, int64_t row, float* out);

// Packed forms of a model's matrices, keyed by the address of their bytes in the file.
class PackedWeights {
 public:
  void add(const TensorRef& w, PackedMatrix p) { by_data_.emplace(w.data, std::move(p)); }
  const PackedMatrix* find(const TensorRef& w) const {
    auto it = by_data_.find(w.data);
    return it == by_data_.end() ? nullptr : &it->second;
  }
  PackedMatrix* find(const TensorRef& w) {
    auto it = by_data_.find(w.data);
    return it == by_data_.end() ? nullptr : &it->second;
  }
  size_t bytes() const;

 private:
  std::unordered_map<const void*, PackedMatrix> by_data_;
};

}  // namespace orchard
