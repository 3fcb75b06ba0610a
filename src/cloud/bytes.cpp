#include "cloud/bytes.h"

#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cstring>
#include <new>
#include <utility>

#include "base/error.h"

namespace orchard::cloud {

std::string to_hex(ByteView bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

Bytes from_hex(std::string_view hex) {
  if (hex.size() % 2) throw Error("hex string has an odd number of digits");
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw Error("hex string has a character that is not a hex digit");
  };
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]));
  return out;
}

void put_u8(Bytes& out, uint8_t v) { out.push_back(v); }
void put_u16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put_bytes(Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); }

// Whole pages of their own, so that mlock and MADV_DONTDUMP cover the secret and nothing else.
SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  mapped_ = (size + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<uint8_t*>(p);
  // Where RLIMIT_MEMLOCK forbids it the secret still works; `locked()` says so.
  locked_ = ::mlock(data_, mapped_) == 0;
  ::madvise(data_, mapped_, MADV_DONTDUMP);
}

SecretBytes::SecretBytes(ByteView bytes) : SecretBytes(bytes.size()) {
  if (!bytes.empty()) std::memcpy(data_, bytes.data(), bytes.size());
}

SecretBytes::~SecretBytes() { release(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

void SecretBytes::release() {
  if (!data_) return;
  OPENSSL_cleanse(data_, mapped_);  // a zeroing the compiler may not drop
  if (locked_) ::munlock(data_, mapped_);
  ::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
  locked_ = false;
}

}  // namespace orchard::cloud
