#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace orchard {
namespace {

class MappedBlob final : public Blob {
 public:
  explicit MappedBlob(const std::string& path) {
    name_ = path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      fail(path, ": cannot stat: ", std::strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail(path, ": is a directory, expected a file");
    }
    size_ = static_cast<size_t>(st.st_size);
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

std::string read_text_file(const std::string& path) {
  if (is_directory(path)) fail(path, ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return ss.str();
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
