// Tensor element types, numbered as GGUF numbers them, with their block geometry.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace orchard {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeTraits {
  std::string_view name;
  int64_t block_elements;  // elements per block (1 for plain types)
  size_t block_bytes;      // bytes per block
  bool weight_type;        // can hold model weights that Orchard dequantizes
};

// Traits of a GGUF type id; nullopt for ids Orchard does not know.
std::optional<DTypeTraits> dtype_traits(uint32_t gguf_type_id);
DTypeTraits traits(DType type);
std::string_view dtype_name(DType type);

// Bytes taken by a row of `n` elements, which must be a multiple of the block size.
size_t row_bytes(DType type, int64_t n);

}  // namespace orchard
