// The private cloud's transparency log, as stored on disk: an append-only RFC 9162 Merkle log of
// opaque entries (release statements, node key bindings) in one file, DIR/log, that survives a
// process killed at any point of an append (kill -9 included) without ever leaving a tree that a
// later check rejects. The HTTP API over it is log_server.h; checkpoints are signed there.
//
// File format (all integers big-endian):
//   header   "orchard-tlog-v1\n" origin "\n"           (origin: the checkpoints' first line)
//   record   u32 length || leaf hash (32 bytes) || entry (length bytes, at most kMaxLogEntrySize)
//   ...      one record per entry, in log order
// The leaf hash is RFC 9162's SHA-256(0x00 || entry); it is stored so that a record checks itself.
//
// Why this design: a record is written with one pwrite at the end of the last whole record and
// made durable (fdatasync) before the append returns, all under an exclusive flock on the file,
// so two processes never interleave and a record is complete before anyone reads it. A process
// killed half-way leaves at most one incomplete record at the end (a torn tail): a record is
// whole only when its length fits the limit, all its bytes are there and its stored leaf hash is
// that of its entry bytes. Whoever next takes the lock (open, refresh, append) keeps every whole
// record and cuts the file back to the end of the last one; nothing else ever shrinks it. The
// alternative, a separate committed-size file updated after the data is durable, costs a second
// fsync per append and still needs the data checked on open, since the two files cannot change
// together. The price here is that open reads and hashes every entry once (about 1 GB/s).
//
// What counts as a torn tail: the bytes after the last whole record when they are no more than
// one largest record (kMaxLogRecordSize). More than that cannot come from one interrupted append,
// so the log is damaged (an edited or corrupted file) and open throws rather than dropping
// entries. The same holds for a file shorter than what this process already read: entries that
// were seen never disappear. A limit of this check: a damaged record within the last
// kMaxLogRecordSize bytes is taken for a torn tail, with the records after it.
//
// Durability: an append returns after its record is on disk. A record written by a process killed
// before its fdatasync is made durable by the next process that reads it (fdatasync on its own
// descriptor), before that process hands it out, so a checkpoint is never signed over entries
// that a power cut could still take back.
//
// Memory: the leaf hashes and every complete subtree's hash (64 bytes per entry in all) and each
// record's offset stay in memory, so roots and proofs take O(log n) hashes; entries are read from
// the file when asked for, and their hash checked again.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloud/bytes.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {

constexpr size_t kMaxLogEntrySize = 1 << 20;
constexpr size_t kLogRecordHeaderSize = 4 + 32;
constexpr size_t kMaxLogRecordSize = kLogRecordHeaderSize + kMaxLogEntrySize;
constexpr size_t kMaxLogOriginSize = 1024;

// Thread-safe: the server's handlers share one. Every failure throws orchard::Error naming the
// log's file and what was wrong.
class TransparencyLog {
 public:
  // Makes DIR (one level) if missing and writes an empty log there for `origin` (non-empty, at
  // most kMaxLogOriginSize bytes, no control character: it becomes a checkpoint's first line).
  // The file appears complete or not at all; throws if DIR already holds a log.
  static TransparencyLog create(const std::string& dir, const std::string& origin);
  // Opens DIR's log, checks every record and cuts a torn tail (see above).
  static TransparencyLog open(const std::string& dir);
  // open, or create with `origin` when DIR holds no log (also when another process creates it at
  // the same moment). The origin of a log that exists is not compared: see origin().
  static TransparencyLog open_or_create(const std::string& dir, const std::string& origin);

  TransparencyLog(TransparencyLog&&) noexcept;
  TransparencyLog& operator=(TransparencyLog&&) noexcept;
  ~TransparencyLog();

  const std::string& origin() const;
  const std::string& path() const;  // DIR/log
  // The number of entries this process has read or appended.
  uint64_t size() const;
  // Reads what other processes appended since (a cheap fstat when nothing changed); the new size.
  uint64_t refresh();

  // Throw when index >= size(), or for an entry that no longer matches its hash on disk.
  Bytes entry(uint64_t index) const;
  Bytes leaf_hash(uint64_t index) const;
  // RFC 9162 MTH of the first `size` entries (size <= size(); 0 gives SHA-256 of nothing).
  Bytes root(uint64_t size) const;
  // merkle.h's proofs over the first `size` entries, the same hashes in the same order: inclusion
  // needs index < size <= size(), consistency 0 < first <= second <= size().
  std::vector<Bytes> inclusion_proof(uint64_t index, uint64_t size) const;
  std::vector<Bytes> consistency_proof(uint64_t first, uint64_t second) const;
  // The index of the entry with this leaf hash, if there is one (as of the last refresh).
  std::optional<uint64_t> find(ByteView leaf_hash) const;
  // The current checkpoint's fields (origin, size(), root(size())), read at one moment.
  Checkpoint checkpoint() const;

  // Appends `entry` (at most kMaxLogEntrySize bytes) durably and returns its index. An entry
  // whose leaf hash is already in the log (appended by any process) is not stored again: its
  // existing index is returned, so a node restart or a release logged twice does not grow it.
  uint64_t append(ByteView entry);

 private:
  struct State;
  explicit TransparencyLog(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace orchard::cloud
