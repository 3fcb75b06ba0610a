// Replay protection for the gateway (RFC 9458 §6.5): a request must carry a Date within `window`
// of the node's clock, and its `enc` (the client's fresh ephemeral key, unique per
// encapsulation) must not have been seen. A replay of a request dated d is accepted only while
// the node's time is within d ± window, and the original came within that span too, so each enc
// is remembered for 2 × window and then forgotten.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "cloud/bytes.h"

namespace orchard::cloud {

class ReplayWindow {
 public:
  using Clock = std::chrono::system_clock;
  // `capacity`: most encs remembered; when full, requests are refused (first_use is false) until
  // old ones age out, rather than remembering without bound.
  explicit ReplayWindow(Clock::duration window, size_t capacity = 1 << 20);

  // Whether `date` (an IMF-fixdate, RFC 9110 §5.6.7) lies within the window of `now`.
  bool date_acceptable(std::string_view date, Clock::time_point now) const;
  // Records `enc` and returns true, or false when it was seen within the last 2 × window (a
  // replay) or the window is full.
  bool first_use(ByteView enc, Clock::time_point now);
  Clock::duration window() const { return window_; }

 private:
  Clock::duration window_;
  size_t capacity_;
  std::mutex mutex_;
  std::set<Bytes> seen_;
  std::deque<std::pair<Clock::time_point, Bytes>> order_;  // oldest first
};

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") to and from a time point; nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);
std::string format_http_date(std::chrono::system_clock::time_point time);

}  // namespace orchard::cloud
