// Read-only views of whole files: memory-mapped when possible, or owned bytes (tests feed
// exact-size heap buffers so that AddressSanitizer sees any read past the end).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace orchard {

class Blob {
 public:
  virtual ~Blob() = default;
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // The file this came from, for error messages.
  const std::string& name() const { return name_; }

 protected:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
};

// Maps `path` read-only. Throws orchard::Error naming the path when it cannot be opened.
std::shared_ptr<const Blob> map_file(const std::string& path);

// Wraps bytes already in memory; `name` is used in error messages.
std::shared_ptr<const Blob> blob_from_bytes(std::vector<uint8_t> bytes, std::string name);

// Reads a whole (small) file into a string. Throws orchard::Error naming the path on failure.
std::string read_text_file(const std::string& path);

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace orchard
