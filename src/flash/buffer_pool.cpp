#include "flash/buffer_pool.h"

#include <sys/mman.h>

#include <new>
#include <utility>

#include "base/error.h"

namespace orchard {

BufferPool::BufferPool(uint64_t capacity, std::string what) : capacity_(capacity), what_(std::move(what)) {}

BufferPool::~BufferPool() = default;

BufferPool::Buffer& BufferPool::Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

void BufferPool::Buffer::reset() {
  if (pool_) pool_->release(data_, mapped_);
  pool_ = nullptr;
  data_ = nullptr;
  size_ = mapped_ = 0;
}

BufferPool::Buffer BufferPool::allocate(uint64_t bytes) {
  const uint64_t mapped = round_up(bytes == 0 ? 1 : bytes);
  {
    std::lock_guard lock(mutex_);
    if (in_use_ + mapped > capacity_)
      fail("--memory-budget: the ", what_, " needs ", in_use_ + mapped, " bytes but holds at most ", capacity_);
    in_use_ += mapped;
    peak_ = std::max(peak_, in_use_);
  }
  void* mem = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::lock_guard lock(mutex_);
    in_use_ -= mapped;
    throw std::bad_alloc();
  }
  Buffer b;
  b.pool_ = this;
  b.data_ = static_cast<uint8_t*>(mem);
  b.size_ = bytes;
  b.mapped_ = mapped;
  return b;
}

void BufferPool::release(uint8_t* data, uint64_t mapped) {
  ::munmap(data, mapped);
  std::lock_guard lock(mutex_);
  in_use_ -= mapped;
}

uint64_t BufferPool::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

uint64_t BufferPool::peak() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

}  // namespace orchard
