// A bounded pool of page-aligned buffers: the only memory limited-memory mode reads weights into.
// Allocation fails (orchard::Error) instead of going over the capacity, so the budget is a hard
// bound on the weight bytes a process holds, not a hint.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>

namespace orchard {

class BufferPool {
 public:
  static constexpr uint64_t kAlignment = 4096;  // O_DIRECT needs page-aligned destinations

  // `what` names the pool in error messages.
  BufferPool(uint64_t capacity, std::string what);
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  // Anonymous pages of their own (returned to the OS when released), so that released buffers
  // do not linger in the heap and count against a cgroup limit.
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&& other) noexcept { *this = std::move(other); }
    Buffer& operator=(Buffer&& other) noexcept;
    ~Buffer() { reset(); }
    uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    void reset();

   private:
    friend class BufferPool;
    BufferPool* pool_ = nullptr;
    uint8_t* data_ = nullptr;
    uint64_t size_ = 0;    // as requested
    uint64_t mapped_ = 0;  // rounded up to pages: what counts against the capacity
  };

  // Throws orchard::Error when `bytes` more would take the pool past its capacity.
  Buffer allocate(uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t in_use() const;
  uint64_t peak() const;  // the most ever held at once

  static uint64_t round_up(uint64_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

 private:
  void release(uint8_t* data, uint64_t mapped);

  const uint64_t capacity_;
  const std::string what_;
  mutable std::mutex mutex_;
  uint64_t in_use_ = 0, peak_ = 0;
};

}  // namespace orchard
