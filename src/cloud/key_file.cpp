#include "cloud/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/mapped_file.h"

namespace orchard::cloud {
namespace {

// One line: the key or vkey, without its line end.
std::string read_key_line(const std::string& path) {
  std::string text = read_text_file(path, 4096);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

void save_signer(const NoteSigner& signer, const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail("key file ", path, ": cannot be created: ", std::strerror(errno));
  const std::string line = signer.format() + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    fail("key file ", path, ": write failed");
  }
}

NoteSigner load_signer(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("key file ", path, ": ", std::strerror(errno));
  if (st.st_mode & 077) fail("key file ", path, ": readable by others than its owner (chmod 600 it)");
  const std::string text = read_key_line(path);
  try {
    return NoteSigner::parse(text);
  } catch (const Error& e) {
    fail("key file ", path, ": ", e.what());
  }
}

NoteVerifier load_verifier(const std::string& vkey_or_path) {
  if (vkey_or_path.find('+') != std::string::npos && ::access(vkey_or_path.c_str(), F_OK) != 0)
    return NoteVerifier::parse(vkey_or_path);
  return NoteVerifier::parse(read_key_line(vkey_or_path));
}

}  // namespace orchard::cloud
