#include "formats/gguf.h"

#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/memory_limit.h"

namespace orchard {
namespace {

constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayNesting = 8;

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default:
      return false;
  }
}

// Smallest encoded size of one value of type `t`, used to bound counts before allocating.
uint64_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: return 8;
    case GgufType::ARRAY: return 12;
  }
  return 1;
}

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

// What one element of an array of `t` takes in memory (the vector slot it is kept in).
uint64_t element_memory(GgufType t) {
  switch (t) {
    case GgufType::STRING: return sizeof(std::string);
    case GgufType::ARRAY: return sizeof(GgufValue);
    case GgufType::FLOAT32: case GgufType::FLOAT64: return sizeof(double);
    default: return sizeof(int64_t);
  }
}

// Heap bytes of a string of `n` bytes beyond its object (none when it fits the small-string
// buffer of libstdc++ and libc++).
uint64_t string_heap(uint64_t n) { return n > 15 ? n + 1 : 0; }

// The parsed metadata and tensor table may take at most this many times the file's size in memory
// (plus kMemorySlack). Real files take 2 to 3 times their metadata's size (a 150k-token vocabulary:
// short strings kept as 32-byte std::string, int32 and float32 widened to 8 bytes), and metadata
// is a small part of a model file; a hostile one of 3 million empty nested arrays (12 bytes each
// in the file, a 176-byte GgufValue each in memory) took 15 times its size before this bound.
constexpr uint64_t kMemoryPerFileByte = 8;
constexpr uint64_t kMemorySlack = uint64_t{1} << 20;

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const { return is_integer_type(type); }
bool GgufValue::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

int64_t GgufTensor::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Reads the file front to back; every read is checked against the end of the blob.
class GgufParser {
 public:
  explicit GgufParser(std::shared_ptr<const Blob> blob)
      : blob_(std::move(blob)), data_(blob_->data()), size_(blob_->size()),
        memory_limit_(size_ * kMemoryPerFileByte + kMemorySlack) {}

  std::shared_ptr<const GgufFile> parse() {
    auto file = std::make_shared<GgufFile>();
    file->blob_ = blob_;
    if (size_ < 4 || std::memcmp(data_, "GGUF", 4) != 0)
      error("not a GGUF file (wrong magic; expected 'GGUF')");
    pos_ = 4;
    const uint32_t version = read_u32("version");
    if (version == 1) error("GGUF version 1 is not supported (only versions 2 and 3)");
    if (version != 2 && version != 3) {
      if ((version & 0xffff) == 0 && version != 0) error("big-endian GGUF is not supported");
      error("unsupported GGUF version ", version, " (only versions 2 and 3)");
    }
    file->version_ = version;
    const uint64_t n_tensors = read_u64("tensor count");
    const uint64_t n_kv = read_u64("metadata count");
    // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor entry
    // at least 8 + 4 + 4 + 8 bytes. Bounding by the file size keeps hostile counts from
    // allocating or looping for long.
    if (n_kv > remaining() / 13) error("metadata count ", n_kv, " does not fit in the file");
    if (n_tensors > remaining() / 24) error("tensor count ", n_tensors, " does not fit in the file");

    // Per entry: its slot in metadata_ and a node of the index (about a pointer, a hash, the key
    // again and its position).
    constexpr uint64_t kEntryMemory = sizeof(std::pair<std::string, GgufValue>) + 2 * sizeof(void*) + sizeof(std::string) + 16;
    charge(n_kv * kEntryMemory, "the metadata table");
    file->metadata_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key = read_string("metadata key");
      charge(2 * string_heap(key.size()), key);
      const uint32_t type = read_u32("metadata type");
      if (!known_type(type)) error("metadata key '", key, "' has unknown value type ", type);
      GgufValue value = read_value(static_cast<GgufType>(type), key, 0);
      if (!file->metadata_index_.emplace(key, file->metadata_.size()).second)
        error("metadata key '", key, "' appears twice");
      file->metadata_.emplace_back(std::move(key), std::move(value));
    }

    if (const GgufValue* a = file->find("general.alignment")) {
      if (!a->is_integer() || a->int_value <= 0 || (a->int_value & (a->int_value - 1)) != 0)
        error("general.alignment must be a positive power of two");
      file->alignment_ = static_cast<uint64_t>(a->int_value);
    }

    // Per tensor: its GgufTensor, its shape, an index node; the loaders keep two more copies as
    // TensorRef, which is why it counts three times.
    constexpr uint64_t kTensorMemory = 3 * (sizeof(GgufTensor) + kMaxDims * sizeof(int64_t)) + 2 * sizeof(void*) + sizeof(std::string) + 16;
    charge(n_tensors * kTensorMemory, "the tensor table");
    file->tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensor t;
      t.name = read_string("tensor name");
      charge(5 * string_heap(t.name.size()), t.name);
      const uint32_t n_dims = read_u32("tensor dimension count");
      if (n_dims == 0 || n_dims > kMaxDims)
        error("tensor '", t.name, "' has ", n_dims, " dimensions (1 to ", kMaxDims, " allowed)");
      int64_t elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t extent = read_u64("tensor dimension");
        if (extent == 0 || extent > (uint64_t{1} << 40))
          error("tensor '", t.name, "' dimension ", d, " is ", extent, " (out of range)");
        if (elements > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(extent))
          error("tensor '", t.name, "' has too many elements");
        elements *= static_cast<int64_t>(extent);
        t.shape.push_back(static_cast<int64_t>(extent));
      }
      const uint32_t type_id = read_u32("tensor type");
      auto traits = dtype_traits(type_id);
      if (!traits) error("tensor '", t.name, "' has unknown tensor type id ", type_id);
      t.type = static_cast<DType>(type_id);
      if (t.shape[0] % traits->block_elements != 0)
        error("tensor '", t.name, "' of type ", traits->name, " has row length ", t.shape[0],
              ", not a multiple of its block size ", traits->block_elements);
      t.nbytes = static_cast<uint64_t>(elements / traits->block_elements) * traits->block_bytes;
      t.offset = read_u64("tensor offset");
      if (t.offset % file->alignment_ != 0)
        error("tensor '", t.name, "' offset ", t.offset, " is not aligned to ", file->alignment_);
      if (!file->tensor_index_.emplace(t.name, file->tensors_.size()).second)
        error("tensor '", t.name, "' appears twice");
      file->tensors_.push_back(std::move(t));
    }

    // Tensor data starts at the next multiple of the alignment after the tensor table.
    uint64_t data_start = (pos_ + file->alignment_ - 1) / file->alignment_ * file->alignment_;
    if (n_tensors > 0 && data_start > size_) error("file ends before the tensor data");
    const uint64_t data_size = n_tensors > 0 ? size_ - data_start : 0;
    for (GgufTensor& t : file->tensors_) {
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        error("tensor '", t.name, "' (", t.nbytes, " bytes at data offset ", t.offset,
              ") extends past the end of the file (", data_size, " bytes of tensor data)");
      t.offset += data_start;
      t.data = data_ + t.offset;
    }
    return file;
  }

 private:
  template <typename... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    fail(blob_->name(), ": ", std::forward<Parts>(parts)...);
  }

  uint64_t remaining() const { return size_ - pos_; }

  // Counts `bytes` of memory about to be allocated for what is being parsed, and refuses the file
  // before allocating when the total passes the limit.
  void charge(uint64_t bytes, const std::string& what) {
    memory_ = saturating_add(memory_, bytes);
    if (memory_ > memory_limit_)
      error("metadata '", what, "' at offset ", pos_, ": the metadata and tensor table would take more than ",
            memory_limit_, " bytes in memory (", kMemoryPerFileByte,
            " times the file's size plus 1 MiB); the file is not a real model");
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      error("truncated: file ends while reading ", what, " at offset ", pos_);
  }

  template <typename T>
  T read_raw(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  uint32_t read_u32(const char* what) { return read_raw<uint32_t>(what); }
  uint64_t read_u64(const char* what) { return read_raw<uint64_t>(what); }

  std::string read_string(const char* what) {
    const uint64_t len = read_u64(what);
    need(len, what);
    if (in_array_) charge(string_heap(len), what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  // Reads one scalar into the integer/float/bool/string slot of `v`.
  void read_scalar(GgufType type, GgufValue& v, const std::string& key) {
    switch (type) {
      case GgufType::UINT8: v.int_value = read_raw<uint8_t>(key.c_str()); break;
      case GgufType::INT8: v.int_value = read_raw<int8_t>(key.c_str()); break;
      case GgufType::UINT16: v.int_value = read_raw<uint16_t>(key.c_str()); break;
      case GgufType::INT16: v.int_value = read_raw<int16_t>(key.c_str()); break;
      case GgufType::UINT32: v.int_value = read_raw<uint32_t>(key.c_str()); break;
      case GgufType::INT32: v.int_value = read_raw<int32_t>(key.c_str()); break;
      case GgufType::UINT64:
        v.uint_value = read_raw<uint64_t>(key.c_str());
        v.int_value = static_cast<int64_t>(v.uint_value);
        break;
      case GgufType::INT64: v.int_value = read_raw<int64_t>(key.c_str()); break;
      case GgufType::FLOAT32: v.float_value = read_raw<float>(key.c_str()); break;
      case GgufType::FLOAT64: v.float_value = read_raw<double>(key.c_str()); break;
      case GgufType::BOOL: {
        const uint8_t b = read_raw<uint8_t>(key.c_str());
        if (b > 1) error("metadata key '", key, "': bool value ", int(b), " is not 0 or 1");
        v.bool_value = b != 0;
        v.int_value = b;
        break;
      }
      case GgufType::STRING: v.string_value = read_string(key.c_str()); break;
      case GgufType::ARRAY: error("internal: array read as scalar");
    }
    if (type != GgufType::UINT64) v.uint_value = static_cast<uint64_t>(v.int_value);
  }

  GgufValue read_value(GgufType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    if (type != GgufType::ARRAY) {
      read_scalar(type, v, key);
      return v;
    }
    if (depth >= kMaxArrayNesting) error("metadata key '", key, "': arrays nested too deeply");
    const uint32_t element_type = read_u32("array element type");
    if (!known_type(element_type))
      error("metadata key '", key, "': array has unknown element type ", element_type);
    v.element_type = static_cast<GgufType>(element_type);
    const uint64_t count = read_u64("array length");
    if (count > remaining() / min_encoded_size(v.element_type))
      error("metadata key '", key, "': array length ", count, " does not fit in the file");
    v.array_length = count;
    charge(count * element_memory(v.element_type), key);  // count fits the file: no overflow
    GgufValue element;
    if (v.element_type == GgufType::ARRAY) {
      v.nested_array.reserve(count);
      for (uint64_t i = 0; i < count; ++i)
        v.nested_array.push_back(read_value(GgufType::ARRAY, key, depth + 1));
    } else if (v.element_type == GgufType::STRING) {
      v.string_array.reserve(count);
      in_array_ = true;
      for (uint64_t i = 0; i < count; ++i) v.string_array.push_back(read_string(key.c_str()));
      in_array_ = false;
    } else if (v.element_type == GgufType::FLOAT32 || v.element_type == GgufType::FLOAT64) {
      v.float_array.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        read_scalar(v.element_type, element, key);
        v.float_array.push_back(element.float_value);
      }
    } else {
      v.int_array.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        read_scalar(v.element_type, element, key);
        v.int_array.push_back(element.int_value);
      }
    }
    return v;
  }

  std::shared_ptr<const Blob> blob_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t memory_ = 0;
  uint64_t memory_limit_;
  bool in_array_ = false;
};

std::shared_ptr<const GgufFile> GgufFile::parse(std::shared_ptr<const Blob> blob) {
  return GgufParser(std::move(blob)).parse();
}

std::shared_ptr<const GgufFile> GgufFile::open(const std::string& path) {
  return parse(map_file(path));
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void wrong_type(const GgufFile& f, std::string_view key, const char* expected,
                             const GgufValue& v) {
  fail(f.path(), ": metadata key '", key, "' should be ", expected, " but is ",
       gguf_type_name(v.type));
}
}  // namespace

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer()) wrong_type(*this, key, "an integer", *v);
  if (v->type == GgufType::UINT64 && v->uint_value > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(path(), ": metadata key '", key, "' value ", v->uint_value, " is out of range");
  return v->int_value;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_float()) return v->float_value;
  if (v->is_integer()) return static_cast<double>(v->int_value);
  wrong_type(*this, key, "a number", *v);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL) wrong_type(*this, key, "a bool", *v);
  return v->bool_value;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::STRING) wrong_type(*this, key, "a string", *v);
  return v->string_value;
}

const std::vector<std::string>* GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  if (v->type != GgufType::ARRAY || v->element_type != GgufType::STRING)
    wrong_type(*this, key, "an array of strings", *v);
  return &v->string_array;
}

const std::vector<int64_t>* GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  if (v->type != GgufType::ARRAY ||
      !(is_integer_type(v->element_type) || v->element_type == GgufType::BOOL))
    wrong_type(*this, key, "an array of integers", *v);
  return &v->int_array;
}

const std::vector<double>* GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return nullptr;
  if (v->type != GgufType::ARRAY ||
      !(v->element_type == GgufType::FLOAT32 || v->element_type == GgufType::FLOAT64))
    wrong_type(*this, key, "an array of floats", *v);
  return &v->float_array;
}

}  // namespace orchard
