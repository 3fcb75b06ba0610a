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
  // Whether the bytes are a read-only mapping of the file: its pages may be dropped
  // (MADV_DONTNEED) and are read back from the file when touched again. Dropping pages of bytes
  // held in memory (blob_from_bytes) would zero them instead.
  bool maps_file() const { return maps_file_; }

 protected:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  bool maps_file_ = false;
};

// Maps `path` read-only. Throws orchard::Error naming the path when it cannot be opened.
std::shared_ptr<const Blob> map_file(const std::string& path);

// Wraps bytes already in memory; `name` is used in error messages.
std::shared_ptr<const Blob> blob_from_bytes(std::vector<uint8_t> bytes, std::string name);

// Text inputs (JSON, templates, token id lists, calibration text) are read whole into memory;
// this caps them so that a wrong path (/dev/zero, a multi-gigabyte file) fails at once instead of
// filling memory. The largest real input we know of, a 150k-token tokenizer.json, is 17 MB.
constexpr uint64_t kMaxTextFileBytes = uint64_t{256} << 20;
// JSON inputs that are never large: config.json, tokenizer_config.json, template inputs.
constexpr uint64_t kMaxJsonFileBytes = uint64_t{16} << 20;

// Reads a whole (small) regular file into a string; refuses anything else (a FIFO, a device, a
// folder) and files over `max_bytes`. Throws orchard::Error naming the path (and the limit).
std::string read_text_file(const std::string& path, uint64_t max_bytes = kMaxTextFileBytes);

// Opens `path` for reading and checks that it is a regular file. Opened non-blocking, so that a
// FIFO fails here instead of blocking in open() until a writer comes; the flag is cleared again
// for regular files. Returns the descriptor (close it) and fills *size when given. Throws
// orchard::Error naming the path.
int open_regular_file(const std::string& path, uint64_t* size = nullptr);

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace orchard
