// GGUF v2/v3 reader over a memory-mapped file: metadata of every value type (arrays included)
// and tensor descriptors whose data pointers are checked to lie inside the file.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/mapped_file.h"
#include "tensor/dtype.h"

namespace orchard {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

std::string_view gguf_type_name(GgufType type);

// One metadata value. Integers are kept as int64 (uint64 values above INT64_MAX keep their bits
// in `uint_value`), floats as double. Arrays keep their elements by kind.
struct GgufValue {
  GgufType type = GgufType::UINT8;
  GgufType element_type = GgufType::UINT8;  // for ARRAY
  int64_t int_value = 0;
  uint64_t uint_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string string_value;
  // ARRAY elements: exactly one of these is filled, by element kind.
  std::vector<int64_t> int_array;        // integer and bool elements
  std::vector<double> float_array;       // FLOAT32/FLOAT64 elements
  std::vector<std::string> string_array; // STRING elements
  std::vector<GgufValue> nested_array;   // ARRAY elements
  uint64_t array_length = 0;

  bool is_integer() const;
  bool is_float() const;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // ne: shape[0] is the contiguous (fastest) dimension
  DType type = DType::F32;
  uint64_t offset = 0;         // from the start of the file
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;
  int64_t element_count() const;
};

class GgufFile {
 public:
  // Parses the header, metadata and tensor table; validates every tensor's type, shape and
  // extent against the file. Throws orchard::Error naming the file and the problem.
  static std::shared_ptr<const GgufFile> parse(std::shared_ptr<const Blob> blob);
  static std::shared_ptr<const GgufFile> open(const std::string& path);

  const std::string& path() const { return blob_->name(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return blob_->size(); }
  const std::shared_ptr<const Blob>& blob() const { return blob_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // Typed lookups: nullopt / nullptr when the key is absent; orchard::Error naming the key when
  // it is present with another type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // also accepts integers
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  const std::vector<std::string>* get_string_array(std::string_view key) const;
  const std::vector<int64_t>* get_int_array(std::string_view key) const;
  const std::vector<double>* get_float_array(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;

 private:
  std::shared_ptr<const Blob> blob_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  friend class GgufParser;
};

}  // namespace orchard
