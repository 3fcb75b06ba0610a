#include "cloud/key_ring.h"

#include <algorithm>

namespace orchard::cloud {

KeyRing::KeyRing(Clock::duration rotation, std::function<Clock::time_point()> now)
    : rotation_(std::max<Clock::duration>(rotation, std::chrono::seconds(1))), now_(std::move(now)) {
  // A random first id: key ids say nothing of how long the node has run.
  random_bytes(&next_id_, 1);
  std::lock_guard<std::mutex> lock(mutex_);
  rotate_locked(now_());
}

// Under mutex_: draws a new key when the newest is a period old, and drops those two periods old.
void KeyRing::rotate_locked(Clock::time_point now) {
  if (keys_.empty() || now - keys_.front()->created >= rotation_) {
    auto key = std::make_shared<NodeKey>();
    key->pair = x25519_generate();
    key->config = KeyConfig{next_id_++, kKemX25519HkdfSha256, key->pair.public_key,
                            {{kKdfHkdfSha256, static_cast<uint16_t>(AeadId::aes128_gcm)},
                             {kKdfHkdfSha256, static_cast<uint16_t>(AeadId::chacha20_poly1305)}}};
    key->created = now;
    keys_.push_front(std::move(key));
  }
  while (!keys_.empty() && now - keys_.back()->created >= 2 * rotation_) keys_.pop_back();
  while (keys_.size() > 2) keys_.pop_back();
}

Bytes KeyRing::encoded_configs() {
  std::lock_guard<std::mutex> lock(mutex_);
  rotate_locked(now_());
  std::vector<KeyConfig> configs;
  for (const auto& key : keys_) configs.push_back(key->config);
  return encode_key_configs(configs);
}

std::chrono::seconds KeyRing::max_age() {
  std::lock_guard<std::mutex> lock(mutex_);
  const Clock::time_point now = now_();
  rotate_locked(now);
  return std::max(std::chrono::seconds(0),
                  std::chrono::duration_cast<std::chrono::seconds>(keys_.front()->created + rotation_ - now));
}

std::shared_ptr<const NodeKey> KeyRing::find(uint8_t key_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  rotate_locked(now_());
  for (const auto& key : keys_)
    if (key->config.key_id == key_id) return key;
  return nullptr;
}

}  // namespace orchard::cloud
