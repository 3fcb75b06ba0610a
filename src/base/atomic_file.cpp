#include "base/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"

namespace orchard {
namespace {

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string unique_suffix() {
  static std::atomic<unsigned> counter{0};
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
}

// Removes PATH.tmp.PID[.N] files left by processes that no longer exist (named fallback only).
void remove_stale_temporaries(const std::string& path) {
  const std::string folder = folder_of(path);
  const size_t slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) return;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || (*end != '\0' && *end != '.')) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) ::unlink((folder + "/" + name).c_str());
  }
  ::closedir(dir);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(folder_of(path_).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (fd_ >= 0) return;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
    fail(path_, ": cannot write: ", std::strerror(errno));
  // ENOENT: O_TMPFILE unknown to an old kernel, or a missing folder (the named open says which).
  remove_stale_temporaries(path_);
  temp_path_ = path_ + unique_suffix();
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path_, ": cannot write: ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t put = ::write(fd_, bytes.data(), bytes.size());
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) fail(path_, ": write failed: ", put == 0 ? "no progress" : std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(put));
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) fail(path_, ": internal: committed twice");
  if (::fsync(fd_) != 0) fail(path_, ": write failed: ", std::strerror(errno));
  if (temp_path_.empty()) {
    // Give the unnamed file a (temporary) name through its /proc descriptor link: linkat with
    // AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
    const std::string named = path_ + unique_suffix();
    const std::string self = "/proc/self/fd/" + std::to_string(fd_);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, named.c_str(), AT_SYMLINK_FOLLOW) != 0)
      fail(path_, ": cannot write: ", std::strerror(errno));
    temp_path_ = named;
  }
  const int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0) fail(path_, ": write failed: ", std::strerror(errno));
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail(path_, ": cannot write: ", std::strerror(errno));
  temp_path_.clear();
}

}  // namespace orchard
