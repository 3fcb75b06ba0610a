#include "cloud/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace orchard::cloud {
namespace {

std::string read_small_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, " ", path, ": cannot be read");
  std::string text;
  text.resize(4096);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (!in.eof()) fail(what, " ", path, ": longer than a key");
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
  const std::string text = read_small_file(path, "key file");
  try {
    return NoteSigner::parse(text);
  } catch (const Error& e) {
    fail("key file ", path, ": ", e.what());
  }
}

NoteVerifier load_verifier(const std::string& vkey_or_path) {
  if (vkey_or_path.find('+') != std::string::npos && ::access(vkey_or_path.c_str(), F_OK) != 0)
    return NoteVerifier::parse(vkey_or_path);
  return NoteVerifier::parse(read_small_file(vkey_or_path, "verifier key file"));
}

}  // namespace orchard::cloud
