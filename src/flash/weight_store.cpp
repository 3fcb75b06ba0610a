#include "flash/weight_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace orchard {

WeightStore::WeightStore(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(path, ": cannot open for streaming: ", std::strerror(errno));
  // Some file systems (tmpfs) refuse O_DIRECT at open; then every read goes the buffered way.
  direct_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
}

WeightStore::~WeightStore() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (fd_ >= 0) ::close(fd_);
}

void WeightStore::buffered_read(uint64_t offset, uint64_t bytes, uint8_t* out) const {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(fd_, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      fail(path_, ": read of ", bytes, " bytes at offset ", offset, " failed: ",
           got == 0 ? "unexpected end of file" : std::strerror(errno));
    done += static_cast<uint64_t>(got);
  }
  // The bytes are now in our buffer; the cached copy would only double the memory they take.
  ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_DONTNEED);
}

const uint8_t* WeightStore::read(uint64_t offset, uint64_t bytes, uint8_t* buffer, uint64_t capacity,
                                 uint64_t* read_bytes) const {
  const uint64_t head = offset % kAlignment;
  if (capacity < (head + bytes + kAlignment - 1) / kAlignment * kAlignment ||
      reinterpret_cast<uintptr_t>(buffer) % kAlignment != 0)
    fail(path_, ": internal: read buffer too small or misaligned");
  if (direct()) {
    const uint64_t start = offset - head;
    const uint64_t length = (head + bytes + kAlignment - 1) / kAlignment * kAlignment;
    uint64_t done = 0;
    bool rejected = false;
    while (done < head + bytes) {
      const ssize_t got = ::pread(direct_fd_, buffer + done, length - done, static_cast<off_t>(start + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EINVAL) {  // alignment the device does not accept: go buffered
        rejected = true;
        break;
      }
      if (got <= 0)
        fail(path_, ": read of ", bytes, " bytes at offset ", offset, " failed: ",
             got == 0 ? "unexpected end of file" : std::strerror(errno));
      done += static_cast<uint64_t>(got);
    }
    if (!rejected) {
      if (read_bytes) *read_bytes += done;
      return buffer + head;
    }
    direct_ok_ = false;
  }
  buffered_read(offset, bytes, buffer + head);
  if (read_bytes) *read_bytes += bytes;
  return buffer + head;
}

void WeightStore::read_small(uint64_t offset, uint64_t bytes, uint8_t* out, uint64_t* read_bytes) const {
  buffered_read(offset, bytes, out);
  if (read_bytes) *read_bytes += bytes;
}

}  // namespace orchard
