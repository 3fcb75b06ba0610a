// Reads weight bytes from the model file with pread, never through a mapping: with O_DIRECT when
// the file system allows it (no page cache at all), else with plain pread followed by
// posix_fadvise(DONTNEED), so that in either case the bytes live only in the buffers we own and
// the budget is not silently doubled by cached file pages.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

namespace orchard {

class WeightStore {
 public:
  static constexpr uint64_t kAlignment = 4096;

  // Throws orchard::Error naming `path` when it cannot be opened.
  explicit WeightStore(const std::string& path);
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;
  ~WeightStore();

  // Capacity a destination needs for read() whatever the offset: O_DIRECT reads whole aligned
  // blocks around the range (exactly: offset % kAlignment + bytes, rounded up to kAlignment).
  static uint64_t span_bytes(uint64_t bytes) { return bytes + 2 * kAlignment; }

  // Reads [offset, offset + bytes) into `buffer` (kAlignment-aligned, room for the aligned span)
  // and returns where the first byte landed: at buffer + offset % kAlignment, so the data keeps
  // the alignment it has in the file (and had in the mapping). Adds the bytes taken from the
  // device to *read_bytes. Thread-safe.
  const uint8_t* read(uint64_t offset, uint64_t bytes, uint8_t* buffer, uint64_t capacity, uint64_t* read_bytes) const;

  // Reads exactly [offset, offset + bytes) into `out` (any alignment): small reads such as one
  // embedding row. Thread-safe.
  void read_small(uint64_t offset, uint64_t bytes, uint8_t* out, uint64_t* read_bytes) const;

  bool direct() const { return direct_fd_ >= 0 && direct_ok_.load(); }
  const std::string& path() const { return path_; }

 private:
  void buffered_read(uint64_t offset, uint64_t bytes, uint8_t* out) const;

  std::string path_;
  int fd_ = -1;
  int direct_fd_ = -1;
  mutable std::atomic<bool> direct_ok_{true};  // cleared when the file system rejects O_DIRECT reads
};

}  // namespace orchard
