// The node's Oblivious HTTP keys: X25519 key pairs drawn at start and rotated, each with its own
// key id. A key is offered for one rotation period and accepted for two, so a client that fetched
// the configuration just before a rotation still gets through; then it expires, and a request to
// it gets the error that sends its client to fetch the keys again. The private keys live only in
// this process's memory (SecretBytes: locked, kept out of core dumps, zeroed when dropped).
#pragma once
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "cloud/ohttp.h"

namespace orchard::cloud {

struct NodeKey {
  KeyConfig config;
  X25519KeyPair pair;
  std::chrono::system_clock::time_point created;
};

class KeyRing {
 public:
  using Clock = std::chrono::system_clock;
  // `now` is the clock (tests move it).
  explicit KeyRing(Clock::duration rotation, std::function<Clock::time_point()> now = [] { return Clock::now(); });

  // `application/ohttp-keys`: the keys on offer, newest first (at most two).
  Bytes encoded_configs();
  // How long a client may cache the configuration: until the next rotation.
  std::chrono::seconds max_age();
  // The unexpired key with this id, or null.
  std::shared_ptr<const NodeKey> find(uint8_t key_id);

 private:
  void rotate_locked(Clock::time_point now);
  Clock::duration rotation_;
  std::function<Clock::time_point()> now_;
  std::mutex mutex_;
  std::deque<std::shared_ptr<const NodeKey>> keys_;  // newest first
  uint8_t next_id_ = 0;
};

}  // namespace orchard::cloud
