// Byte strings for the private cloud node's wire formats, and memory for secrets.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace orchard::cloud {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
inline std::string_view as_text(ByteView b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string to_hex(ByteView bytes);
Bytes from_hex(std::string_view hex);  // throws orchard::Error on an odd length or a non-hex digit

// Big-endian integers, as every format here writes them.
void put_u8(Bytes& out, uint8_t v);
void put_u16(Bytes& out, uint16_t v);
void put_bytes(Bytes& out, ByteView b);

// A secret's bytes: locked in RAM (mlock: never swapped out, so never written to disk) where the
// process may lock memory, excluded from core dumps (MADV_DONTDUMP), and zeroed when destroyed.
// Move-only.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled
  explicit SecretBytes(ByteView bytes);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  ByteView view() const { return {data_, size_}; }
  bool locked() const { return locked_; }

 private:
  void release();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;
  bool locked_ = false;
};

}  // namespace orchard::cloud
