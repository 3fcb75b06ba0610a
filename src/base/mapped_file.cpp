#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>

#include "base/error.h"

namespace orchard {
namespace {

class MappedBlob final : public Blob {
 public:
  explicit MappedBlob(const std::string& path) {
    name_ = path;
    maps_file_ = true;
    uint64_t size = 0;
    const int fd = open_regular_file(path, &size);
    size_ = static_cast<size_t>(size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        fail(path, ": cannot map: ", std::strerror(err));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
  }
  ~MappedBlob() override {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
};

class OwnedBlob final : public Blob {
 public:
  OwnedBlob(std::vector<uint8_t> bytes, std::string name) : bytes_(std::move(bytes)) {
    name_ = std::move(name);
    data_ = bytes_.data();
    size_ = bytes_.size();
  }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

std::shared_ptr<const Blob> map_file(const std::string& path) {
  return std::make_shared<MappedBlob>(path);
}

std::shared_ptr<const Blob> blob_from_bytes(std::vector<uint8_t> bytes, std::string name) {
  return std::make_shared<OwnedBlob>(std::move(bytes), std::move(name));
}

int open_regular_file(const std::string& path, uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    fail(path, ": is ", kind, ", expected a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (size) *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  const int fd = open_regular_file(path, &size);
  auto too_large = [&] {
    ::close(fd);
    fail(path, ": larger than the limit of ", max_bytes, " bytes (", max_bytes >> 20, " MiB) for this text input");
  };
  if (size > max_bytes) too_large();
  // Read to the end rather than trusting st_size (the file may grow, /proc files report 0), but
  // never past the limit.
  std::string text;
  text.resize(static_cast<size_t>(size) + 1);
  size_t used = 0;
  while (true) {
    if (used == text.size()) {
      if (used > max_bytes) too_large();
      text.resize(std::min<uint64_t>(max_bytes + 1, std::max<uint64_t>(4096, 2 * uint64_t{text.size()})));
    }
    const ssize_t got = ::read(fd, text.data() + used, text.size() - used);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      fail(path, ": read error: ", std::strerror(err));
    }
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  ::close(fd);
  text.resize(used);
  return text;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace orchard
