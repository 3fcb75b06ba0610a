// GGUF v3 writer that streams: the header, metadata and tensor table are written first (every
// tensor's type and shape is known before its data exists), then each tensor's bytes in the
// order the tensors were declared. A model never has to be whole in memory to be written.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/atomic_file.h"
#include "formats/gguf.h"
#include "tensor/dtype.h"

namespace orchard {

class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata; setting a key again replaces its value in place (keeps the key order).
  void set(const std::string& key, GgufValue value);
  void set_string(const std::string& key, std::string value);
  void set_u32(const std::string& key, uint32_t value);
  void set_f32(const std::string& key, float value);
  void set_bool(const std::string& key, bool value);
  void remove(const std::string& key);

  // Declares a tensor; shape lists the contiguous dimension first. The row length must be a
  // whole number of the type's blocks. Returns its index.
  size_t add_tensor(const std::string& name, std::vector<int64_t> shape, DType type);
  uint64_t tensor_bytes(size_t index) const { return tensors_[index].nbytes; }
  // Header + metadata + table + padded data: the size of the finished file.
  uint64_t total_bytes() const;

  // Opens `path`.tmp and writes everything before the tensor data.
  void begin(const std::string& path);
  // Appends bytes of the current tensor (tensors are filled in declaration order; a tensor may
  // be written in several pieces). orchard::Error if more bytes come than the tensor holds.
  void write(const void* data, size_t size);
  // Checks every tensor was filled, closes the file and renames it to `path`.
  void finish();

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    DType type;
    uint64_t offset;  // from the start of the data section
    uint64_t nbytes;
  };
  void put(const void* data, size_t size);
  void pad_to(uint64_t alignment);

  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
  uint64_t data_bytes_ = 0;
  std::string path_;
  std::unique_ptr<AtomicFile> out_;  // unnamed until finish(): a killed process leaves nothing
  FILE* file_ = nullptr;             // buffered writes to a duplicate of out_'s descriptor
  uint64_t written_ = 0;        // bytes written to the file so far
  size_t current_ = 0;          // tensor being filled
  uint64_t current_filled_ = 0; // its bytes written so far
};

// Builders for metadata values.
GgufValue gguf_string(std::string s);
GgufValue gguf_u32(uint32_t v);
GgufValue gguf_f32(float v);

}  // namespace orchard
