#include "formats/gguf_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace orchard {
namespace {

uint64_t round_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Serializes little-endian values into a byte string (the header is small next to the data).
class ByteSink {
 public:
  template <typename T>
  void raw(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = bytes.size();
    bytes.resize(at + sizeof v);
    std::memcpy(bytes.data() + at, &v, sizeof v);
  }
  void string(std::string_view s) {
    raw<uint64_t>(s.size());
    bytes.append(s.data(), s.size());
  }
  void value(const GgufValue& v, GgufType type, const std::string& key);
  std::string bytes;
};

void ByteSink::value(const GgufValue& v, GgufType type, const std::string& key) {
  switch (type) {
    case GgufType::UINT8: return raw(static_cast<uint8_t>(v.int_value));
    case GgufType::INT8: return raw(static_cast<int8_t>(v.int_value));
    case GgufType::UINT16: return raw(static_cast<uint16_t>(v.int_value));
    case GgufType::INT16: return raw(static_cast<int16_t>(v.int_value));
    case GgufType::UINT32: return raw(static_cast<uint32_t>(v.int_value));
    case GgufType::INT32: return raw(static_cast<int32_t>(v.int_value));
    case GgufType::UINT64: return raw(v.uint_value);
    case GgufType::INT64: return raw(v.int_value);
    case GgufType::FLOAT32: return raw(static_cast<float>(v.float_value));
    case GgufType::FLOAT64: return raw(v.float_value);
    case GgufType::BOOL: return raw(static_cast<uint8_t>(v.bool_value ? 1 : 0));
    case GgufType::STRING: return string(v.string_value);
    case GgufType::ARRAY: {
      raw(static_cast<uint32_t>(v.element_type));
      const GgufType e = v.element_type;
      if (e == GgufType::STRING) {
        raw<uint64_t>(v.string_array.size());
        for (const std::string& s : v.string_array) string(s);
      } else if (e == GgufType::ARRAY) {
        raw<uint64_t>(v.nested_array.size());
        for (const GgufValue& n : v.nested_array) value(n, GgufType::ARRAY, key);
      } else if (e == GgufType::FLOAT32 || e == GgufType::FLOAT64) {
        raw<uint64_t>(v.float_array.size());
        for (double f : v.float_array) {
          GgufValue element;
          element.float_value = f;
          value(element, e, key);
        }
      } else {
        raw<uint64_t>(v.int_array.size());
        for (int64_t i : v.int_array) {
          GgufValue element;
          element.int_value = i;
          element.uint_value = static_cast<uint64_t>(i);
          element.bool_value = i != 0;
          value(element, e, key);
        }
      }
      return;
    }
  }
  fail("GGUF writer: metadata key '", key, "' has unknown type ", static_cast<uint32_t>(type));
}

}  // namespace

GgufValue gguf_string(std::string s) {
  GgufValue v;
  v.type = GgufType::STRING;
  v.string_value = std::move(s);
  return v;
}

GgufValue gguf_u32(uint32_t x) {
  GgufValue v;
  v.type = GgufType::UINT32;
  v.int_value = x;
  v.uint_value = x;
  return v;
}

GgufValue gguf_f32(float x) {
  GgufValue v;
  v.type = GgufType::FLOAT32;
  v.float_value = x;
  return v;
}

GgufWriter::GgufWriter(uint64_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail("GGUF writer: alignment ", alignment, " is not a power of two");
  if (alignment != 32) set_u32("general.alignment", static_cast<uint32_t>(alignment));
}

GgufWriter::~GgufWriter() {
  if (file_) std::fclose(file_);  // abandoned half-way (an error): out_ discards the file
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : metadata_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::set_string(const std::string& key, std::string value) { set(key, gguf_string(std::move(value))); }
void GgufWriter::set_u32(const std::string& key, uint32_t value) { set(key, gguf_u32(value)); }
void GgufWriter::set_f32(const std::string& key, float value) { set(key, gguf_f32(value)); }
void GgufWriter::set_bool(const std::string& key, bool value) {
  GgufValue v;
  v.type = GgufType::BOOL;
  v.bool_value = value;
  v.int_value = value;
  set(key, std::move(v));
}

void GgufWriter::remove(const std::string& key) {
  std::erase_if(metadata_, [&](const auto& kv) { return kv.first == key; });
}

size_t GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> shape, DType type) {
  if (file_) fail("GGUF writer: tensor '", name, "' declared after writing began");
  const DTypeTraits t = traits(type);
  if (shape.empty() || shape[0] % t.block_elements != 0)
    fail("GGUF writer: tensor '", name, "': rows of ", shape.empty() ? 0 : shape[0],
         " elements are not a whole number of ", t.name, " blocks (", t.block_elements, ")");
  uint64_t elements = 1;
  for (int64_t d : shape) {
    if (d <= 0) fail("GGUF writer: tensor '", name, "' has a non-positive dimension");
    elements *= static_cast<uint64_t>(d);
  }
  const uint64_t nbytes = elements / t.block_elements * t.block_bytes;
  data_bytes_ = round_up(data_bytes_, alignment_);
  tensors_.push_back({name, std::move(shape), type, data_bytes_, nbytes});
  data_bytes_ += nbytes;
  return tensors_.size() - 1;
}

// Everything before the data section, unpadded.
static std::string serialize_header(const std::vector<std::pair<std::string, GgufValue>>& metadata,
                                    const auto& tensors) {
  ByteSink s;
  s.bytes.append("GGUF", 4);
  s.raw<uint32_t>(3);
  s.raw<uint64_t>(tensors.size());
  s.raw<uint64_t>(metadata.size());
  for (const auto& [key, v] : metadata) {
    s.string(key);
    s.raw(static_cast<uint32_t>(v.type));
    s.value(v, v.type, key);
  }
  for (const auto& t : tensors) {
    s.string(t.name);
    s.raw<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) s.raw<uint64_t>(static_cast<uint64_t>(d));
    s.raw(static_cast<uint32_t>(t.type));
    s.raw<uint64_t>(t.offset);
  }
  return std::move(s.bytes);
}

uint64_t GgufWriter::total_bytes() const {
  return round_up(serialize_header(metadata_, tensors_).size(), alignment_) + data_bytes_;
}

void GgufWriter::put(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size)
    fail(path_, ": write failed: ", std::strerror(errno));
  written_ += size;
}

void GgufWriter::pad_to(uint64_t alignment) {
  static const char zeros[256] = {};
  uint64_t pad = round_up(written_, alignment) - written_;
  while (pad) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(pad, sizeof zeros));
    put(zeros, n);
    pad -= n;
  }
}

void GgufWriter::begin(const std::string& path) {
  if (file_) fail("GGUF writer: begin called twice");
  path_ = path;
  out_ = std::make_unique<AtomicFile>(path);
  const int fd = ::dup(out_->fd());
  file_ = fd >= 0 ? ::fdopen(fd, "wb") : nullptr;
  if (!file_) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    out_.reset();
    fail(path, ": cannot write: ", std::strerror(err));
  }
  const std::string header = serialize_header(metadata_, tensors_);
  put(header.data(), header.size());
  pad_to(alignment_);
  current_ = 0;
  current_filled_ = 0;
}

void GgufWriter::write(const void* data, size_t size) {
  if (!file_) fail("GGUF writer: write before begin");
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    while (current_ < tensors_.size() && current_filled_ == tensors_[current_].nbytes) {
      ++current_;
      current_filled_ = 0;
    }
    if (current_ == tensors_.size()) fail(path_, ": more tensor data written than declared");
    const Tensor& t = tensors_[current_];
    if (current_filled_ == 0) pad_to(alignment_);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, t.nbytes - current_filled_));
    put(bytes, n);
    current_filled_ += n;
    bytes += n;
    size -= n;
  }
}

void GgufWriter::finish() {
  if (!file_) fail("GGUF writer: finish before begin");
  while (current_ < tensors_.size() && current_filled_ == tensors_[current_].nbytes) {
    ++current_;
    current_filled_ = 0;
  }
  if (current_ != tensors_.size())
    fail(path_, ": tensor '", tensors_[current_].name, "' was not fully written");
  FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) {
    out_.reset();
    fail(path_, ": write failed");
  }
  out_->commit();
  out_.reset();
}

}  // namespace orchard
