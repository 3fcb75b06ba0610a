#include "cloud/tlog.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/merkle.h"

namespace orchard::cloud {
namespace {

constexpr std::string_view kMagic = "orchard-tlog-v1\n";

using Hash = std::array<uint8_t, kSha256Size>;

// Leaf hashes are SHA-256 outputs, so their first bytes are already a good hash-table key.
struct HashKey {
  size_t operator()(const Hash& h) const {
    size_t v;
    std::memcpy(&v, h.data(), sizeof v);
    return v;
  }
};

Hash to_hash(ByteView b) {
  Hash h;
  std::copy_n(b.begin(), h.size(), h.begin());
  return h;
}

Bytes to_bytes(const Hash& h) { return Bytes(h.begin(), h.end()); }

uint32_t read_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// pread until `size` bytes or the end of the file; the count read, or -1 on an error.
ssize_t read_at(int fd, uint8_t* out, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

bool write_at(int fd, const uint8_t* data, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// The exclusive lock every writer and reader of the file takes while it reads or changes the
// records (flock: released by the kernel when a process dies, so a killed writer blocks no one).
class FileLock {
 public:
  FileLock(int fd, const std::string& path) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) fail("transparency log ", path, ": cannot lock the file: ", std::strerror(errno));
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

void check_origin(const std::string& origin) {
  if (origin.size() > kMaxLogOriginSize)
    fail("transparency log: the origin is ", origin.size(), " bytes, more than ", kMaxLogOriginSize);
  try {
    format_checkpoint(Checkpoint{.origin = origin, .size = 0, .root_hash = Bytes(kSha256Size), .extensions = {}});
  } catch (const Error& e) {
    fail("transparency log: the origin cannot be a checkpoint's first line: ", e.what());
  }
}

void sync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("transparency log ", dir, ": cannot open the folder: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("transparency log ", dir, ": cannot sync the folder: ", std::strerror(errno));
}

// Writes the header of an empty log to DIR/log, complete or not at all: an unnamed file
// (O_TMPFILE) linked under its name once durable, or, where the file system has no O_TMPFILE, a
// named one linked the same way. link() never replaces a file, so of two processes creating the
// same log one wins and the other sees false.
bool create_file(const std::string& dir, const std::string& origin) {
  check_origin(origin);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    fail("transparency log ", dir, ": cannot make the folder: ", std::strerror(errno));
  const std::string path = dir + "/log";
  std::string temp;
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    temp = str_cat(path, ".new.", ::getpid());
    ::unlink(temp.c_str());
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail("transparency log ", path, ": cannot be created: ", std::strerror(errno));
  }
  const std::string header = str_cat(kMagic, origin, '\n');
  bool ok = write_at(fd, as_bytes(header).data(), header.size(), 0) && ::fsync(fd) == 0;
  int link_errno = 0;
  if (ok) {
    const int rc = temp.empty() ? ::linkat(AT_FDCWD, str_cat("/proc/self/fd/", fd).c_str(), AT_FDCWD, path.c_str(),
                                           AT_SYMLINK_FOLLOW)
                                : ::link(temp.c_str(), path.c_str());
    if (rc != 0) link_errno = errno;
  }
  ::close(fd);
  if (!temp.empty()) ::unlink(temp.c_str());
  if (!ok) fail("transparency log ", path, ": cannot write the header: ", std::strerror(errno));
  if (link_errno == EEXIST) return false;
  if (link_errno != 0) fail("transparency log ", path, ": cannot be created: ", std::strerror(link_errno));
  sync_folder(dir);
  return true;
}

}  // namespace

struct TransparencyLog::State {
  std::string path;
  std::string origin;
  int fd = -1;
  uint64_t end = 0;                        // the offset after the last whole record
  std::vector<uint64_t> offsets;           // each record's
  std::vector<std::vector<Hash>> levels;   // levels[h][j]: the root of leaves [j 2^h, (j+1) 2^h)
  std::unordered_map<Hash, uint64_t, HashKey> index;
  mutable std::mutex mutex;

  ~State() {
    if (fd >= 0) ::close(fd);
  }

  template <typename... Parts>
  [[noreturn]] void fail_here(Parts&&... parts) const {
    fail("transparency log ", path, ": ", std::forward<Parts>(parts)...);
  }

  uint64_t size() const { return offsets.size(); }

  void add_leaf(const Hash& leaf, uint64_t offset) {
    index.emplace(leaf, offsets.size());  // a duplicate in the file keeps the first index
    offsets.push_back(offset);
    if (levels.empty()) levels.emplace_back();
    levels[0].push_back(leaf);
    // Each leaf that completes a pair completes a node one level up, and so on.
    for (size_t h = 0; levels[h].size() % 2 == 0; ++h) {
      if (levels.size() == h + 1) levels.emplace_back();
      const std::vector<Hash>& level = levels[h];
      levels[h + 1].push_back(to_hash(merkle_node_hash(level[level.size() - 2], level.back())));
    }
  }

  // MTH of leaves [begin, end), end <= size(). The subtrees RFC 9162 splits a tree into are
  // aligned to their own size, so each complete one is a lookup and only the right edge is hashed.
  Hash subtree(uint64_t begin, uint64_t end_leaf) const {
    const uint64_t n = end_leaf - begin;
    if (std::has_single_bit(n) && begin % n == 0) {
      const int h = std::countr_zero(n);
      return levels[h][begin >> h];
    }
    const uint64_t k = std::bit_floor(n - 1);
    return to_hash(merkle_node_hash(subtree(begin, begin + k), subtree(begin + k, end_leaf)));
  }

  // RFC 9162 §2.1.3.1 PATH(m, D[begin:end]).
  void audit_path(uint64_t m, uint64_t begin, uint64_t end_leaf, std::vector<Bytes>& out) const {
    const uint64_t n = end_leaf - begin;
    if (n <= 1) return;
    const uint64_t k = std::bit_floor(n - 1);
    if (m < k) {
      audit_path(m, begin, begin + k, out);
      out.push_back(to_bytes(subtree(begin + k, end_leaf)));
    } else {
      audit_path(m - k, begin + k, end_leaf, out);
      out.push_back(to_bytes(subtree(begin, begin + k)));
    }
  }

  // RFC 9162 §2.1.4.1 SUBPROOF(m, D[begin:end], whole).
  void subproof(uint64_t m, uint64_t begin, uint64_t end_leaf, bool whole, std::vector<Bytes>& out) const {
    const uint64_t n = end_leaf - begin;
    if (m == n) {
      if (!whole) out.push_back(to_bytes(subtree(begin, end_leaf)));
      return;
    }
    const uint64_t k = std::bit_floor(n - 1);
    if (m <= k) {
      subproof(m, begin, begin + k, whole, out);
      out.push_back(to_bytes(subtree(begin + k, end_leaf)));
    } else {
      subproof(m - k, begin + k, end_leaf, false, out);
      out.push_back(to_bytes(subtree(begin, begin + k)));
    }
  }

  // Reads the whole records after `end`, under the file lock. What follows the last whole record
  // is a torn tail (cut when `cut` is set) or, when longer than one record, damage.
  void scan(bool cut) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail_here("cannot stat the file: ", std::strerror(errno));
    const auto file_size = static_cast<uint64_t>(st.st_size);
    if (file_size < end)
      fail_here("the file is ", file_size, " bytes, shorter than the ", end,
                " already read: entries were removed (the log is damaged)");
    uint64_t added = 0;
    std::string why;
    Bytes entry;
    while (end < file_size) {
      const uint64_t left = file_size - end;
      uint8_t header[kLogRecordHeaderSize];
      if (left < kLogRecordHeaderSize) {
        why = str_cat("its header is cut off after ", left, " bytes");
        break;
      }
      if (read_at(fd, header, sizeof header, end) != static_cast<ssize_t>(sizeof header))
        fail_here("cannot read record ", size(), ": ", std::strerror(errno));
      const uint32_t length = read_u32(header);
      if (length > kMaxLogEntrySize) {
        why = str_cat("its length ", length, " is over the limit of ", kMaxLogEntrySize);
        break;
      }
      if (left - kLogRecordHeaderSize < length) {
        why = str_cat("its entry is cut off after ", left - kLogRecordHeaderSize, " of ", length, " bytes");
        break;
      }
      entry.resize(length);
      if (read_at(fd, entry.data(), length, end + kLogRecordHeaderSize) != static_cast<ssize_t>(length))
        fail_here("cannot read record ", size(), ": ", std::strerror(errno));
      const Bytes leaf = merkle_leaf_hash(entry);
      if (!std::equal(leaf.begin(), leaf.end(), header + 4)) {
        why = "its leaf hash is not its entry's";
        break;
      }
      add_leaf(to_hash(leaf), end);
      end += kLogRecordHeaderSize + length;
      ++added;
    }
    const uint64_t tail = file_size - end;
    if (tail > kMaxLogRecordSize)
      fail_here("record ", size(), " at byte ", end, " is not whole (", why, ") and ", tail,
                " bytes follow it, more than one append writes: the log is damaged");
    if (tail > 0 && cut && ::ftruncate(fd, static_cast<off_t>(end)) != 0)
      fail_here("cannot cut the torn record at byte ", end, ": ", std::strerror(errno));
    // Records written by a process killed before its fdatasync are made durable before use. The
    // cut needs no sync of its own: should it be lost, the next opener cuts the tail again, and
    // an append's fdatasync at that offset persists the new length with the new record.
    if (added > 0 && ::fdatasync(fd) != 0)
      fail_here("cannot sync the file: ", std::strerror(errno));
  }

  void check_index(uint64_t i, uint64_t limit, const char* what) const {
    if (i >= limit) fail_here(what, " ", i, " is past the tree of ", limit);
  }
  void check_size(uint64_t n) const {
    if (n > size()) fail_here("size ", n, " is beyond the tree of ", size());
  }
};

TransparencyLog::TransparencyLog(std::unique_ptr<State> state) : state_(std::move(state)) {}
TransparencyLog::TransparencyLog(TransparencyLog&&) noexcept = default;
TransparencyLog& TransparencyLog::operator=(TransparencyLog&&) noexcept = default;
TransparencyLog::~TransparencyLog() = default;

TransparencyLog TransparencyLog::create(const std::string& dir, const std::string& origin) {
  if (!create_file(dir, origin)) fail("transparency log ", dir, "/log: already exists");
  return open(dir);
}

TransparencyLog TransparencyLog::open_or_create(const std::string& dir, const std::string& origin) {
  const std::string path = dir + "/log";
  if (::access(path.c_str(), F_OK) != 0) create_file(dir, origin);  // false: another process made it
  return open(dir);
}

TransparencyLog TransparencyLog::open(const std::string& dir) {
  auto s = std::make_unique<State>();
  s->path = dir + "/log";
  s->fd = ::open(s->path.c_str(), O_RDWR | O_CLOEXEC);
  if (s->fd < 0) s->fail_here("cannot be opened: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) s->fail_here("not a regular file");
  FileLock lock(s->fd, s->path);
  std::string header(kMagic.size() + kMaxLogOriginSize + 1, '\0');
  const ssize_t n = read_at(s->fd, reinterpret_cast<uint8_t*>(header.data()), header.size(), 0);
  if (n < 0) s->fail_here("cannot be read: ", std::strerror(errno));
  header.resize(static_cast<size_t>(n));
  if (header.compare(0, kMagic.size(), kMagic) != 0) s->fail_here("not a transparency log (no orchard-tlog-v1 header)");
  const size_t newline = header.find('\n', kMagic.size());
  if (newline == std::string::npos) s->fail_here("the header's origin line is cut off or longer than ", kMaxLogOriginSize);
  s->origin = header.substr(kMagic.size(), newline - kMagic.size());
  try {
    check_origin(s->origin);
  } catch (const Error& e) {
    s->fail_here(e.what());
  }
  s->end = newline + 1;
  s->scan(true);
  return TransparencyLog(std::move(s));
}

const std::string& TransparencyLog::origin() const { return state_->origin; }
const std::string& TransparencyLog::path() const { return state_->path; }

uint64_t TransparencyLog::size() const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  return state_->size();
}

uint64_t TransparencyLog::refresh() {
  State& s = *state_;
  std::lock_guard<std::mutex> guard(s.mutex);
  struct stat st {};
  if (::fstat(s.fd, &st) != 0) s.fail_here("cannot stat the file: ", std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != s.end) {
    FileLock lock(s.fd, s.path);
    s.scan(true);
  }
  return s.size();
}

Bytes TransparencyLog::entry(uint64_t index) const {
  const State& s = *state_;
  std::lock_guard<std::mutex> guard(s.mutex);
  s.check_index(index, s.size(), "entry");
  uint8_t header[kLogRecordHeaderSize];
  const uint64_t offset = s.offsets[index];
  if (read_at(s.fd, header, sizeof header, offset) != static_cast<ssize_t>(sizeof header))
    s.fail_here("cannot read record ", index);
  const uint32_t length = read_u32(header);
  Bytes out(std::min<size_t>(length, kMaxLogEntrySize));
  if (length > kMaxLogEntrySize ||
      read_at(s.fd, out.data(), out.size(), offset + kLogRecordHeaderSize) != static_cast<ssize_t>(out.size()))
    s.fail_here("record ", index, " can no longer be read whole (the log is damaged)");
  const Bytes leaf = merkle_leaf_hash(out);
  if (!std::equal(leaf.begin(), leaf.end(), s.levels[0][index].begin()))
    s.fail_here("record ", index, " no longer matches its leaf hash (the log is damaged)");
  return out;
}

Bytes TransparencyLog::leaf_hash(uint64_t index) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  state_->check_index(index, state_->size(), "entry");
  return to_bytes(state_->levels[0][index]);
}

Bytes TransparencyLog::root(uint64_t size) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  state_->check_size(size);
  return size == 0 ? sha256({}) : to_bytes(state_->subtree(0, size));
}

std::vector<Bytes> TransparencyLog::inclusion_proof(uint64_t index, uint64_t size) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  state_->check_size(size);
  state_->check_index(index, size, "inclusion proof: index");
  std::vector<Bytes> out;
  state_->audit_path(index, 0, size, out);
  return out;
}

std::vector<Bytes> TransparencyLog::consistency_proof(uint64_t first, uint64_t second) const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  state_->check_size(second);
  if (first == 0 || first > second)
    state_->fail_here("consistency proof from size ", first, " to ", second, ": needs 0 < first <= second");
  std::vector<Bytes> out;
  state_->subproof(first, 0, second, true, out);
  return out;
}

std::optional<uint64_t> TransparencyLog::find(ByteView leaf_hash) const {
  if (leaf_hash.size() != kSha256Size) return std::nullopt;
  std::lock_guard<std::mutex> guard(state_->mutex);
  const auto it = state_->index.find(to_hash(leaf_hash));
  if (it == state_->index.end()) return std::nullopt;
  return it->second;
}

Checkpoint TransparencyLog::checkpoint() const {
  std::lock_guard<std::mutex> guard(state_->mutex);
  const uint64_t n = state_->size();
  return Checkpoint{.origin = state_->origin,
                    .size = n,
                    .root_hash = n == 0 ? sha256({}) : to_bytes(state_->subtree(0, n)),
                    .extensions = {}};
}

uint64_t TransparencyLog::append(ByteView entry) {
  State& s = *state_;
  if (entry.size() > kMaxLogEntrySize)
    s.fail_here("an entry of ", entry.size(), " bytes is over the limit of ", kMaxLogEntrySize);
  const Bytes leaf = merkle_leaf_hash(entry);
  std::lock_guard<std::mutex> guard(s.mutex);
  FileLock lock(s.fd, s.path);
  s.scan(true);  // what other processes appended, so that a duplicate is found
  if (const auto it = s.index.find(to_hash(leaf)); it != s.index.end()) return it->second;
  Bytes record;
  record.reserve(kLogRecordHeaderSize + entry.size());
  const auto length = static_cast<uint32_t>(entry.size());
  for (int shift = 24; shift >= 0; shift -= 8) record.push_back(static_cast<uint8_t>(length >> shift));
  put_bytes(record, leaf);
  put_bytes(record, entry);
  if (!write_at(s.fd, record.data(), record.size(), s.end) || ::fdatasync(s.fd) != 0) {
    const int saved = errno;
    if (::ftruncate(s.fd, static_cast<off_t>(s.end)) != 0) {
      // The next process to take the lock cuts it as a torn tail.
    }
    s.fail_here("cannot append entry ", s.size(), ": ", std::strerror(saved));
  }
  const uint64_t index = s.size();
  s.add_leaf(to_hash(leaf), s.end);
  s.end += record.size();
  return index;
}

}  // namespace orchard::cloud
