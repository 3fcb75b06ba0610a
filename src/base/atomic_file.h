// A file that appears at its path only when complete, and leaves nothing behind when the process
// dies half-way, even by SIGKILL.
//
// Written as an unnamed file (O_TMPFILE) in the target's folder and linked under a name only at
// commit(): a process killed before commit leaves no file at all, since an unnamed file is freed
// with its last descriptor. The link goes to a unique temporary name that is at once renamed over
// the target (linkat cannot replace a file), so a reader sees the old file or the whole new one.
// Where the file system has no O_TMPFILE (some network and FUSE file systems), the file is written
// under PATH.tmp.PID; such leftovers of processes that no longer run are removed by the next
// AtomicFile for the same path, so a kill -9 leaves at most one until the next write.
#pragma once
#include <string>
#include <string_view>

namespace orchard {

class AtomicFile {
 public:
  // Throws orchard::Error naming `path` when the folder cannot be written.
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // discards the file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_; }
  // Writes all of `bytes` after what was written before. Throws orchard::Error naming the path.
  void write(std::string_view bytes);
  // Flushes to storage and publishes the file at its path (replacing any file there), then closes
  // it. Throws orchard::Error naming the path.
  void commit();

 private:
  std::string path_;
  std::string temp_path_;  // the named fallback; empty while the file is unnamed
  int fd_ = -1;
};

}  // namespace orchard
