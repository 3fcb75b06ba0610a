#include "cloud/replay_window.h"

#include <ctime>

namespace orchard::cloud {

ReplayWindow::ReplayWindow(Clock::duration window, size_t capacity) : window_(window), capacity_(capacity) {}

bool ReplayWindow::date_acceptable(std::string_view date, Clock::time_point now) const {
  const std::optional<Clock::time_point> t = parse_http_date(date);
  if (!t) return false;
  return *t <= now + window_ && *t >= now - window_;
}

bool ReplayWindow::first_use(ByteView enc, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  while (!order_.empty() && now - order_.front().first > 2 * window_) {
    seen_.erase(order_.front().second);
    order_.pop_front();
  }
  if (seen_.size() >= capacity_) return false;
  Bytes key(enc.begin(), enc.end());
  if (!seen_.insert(key).second) return false;
  order_.emplace_back(now, std::move(key));
  return true;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  // Exactly 29 characters: "Sun, 06 Nov 1994 08:49:37 GMT".
  if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT") return std::nullopt;
  static const char* const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  bool day_ok = false;
  for (const char* d : days) day_ok |= text.substr(0, 3) == d;
  if (!day_ok) return std::nullopt;
  auto number = [&](size_t at, size_t digits) -> int {
    int v = 0;
    for (size_t i = at; i < at + digits; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_mday = number(5, 2);
  tm.tm_mon = -1;
  for (int m = 0; m < 12; ++m)
    if (text.substr(8, 3) == months[m]) tm.tm_mon = m;
  tm.tm_year = number(12, 4) - 1900;
  tm.tm_hour = number(17, 2);
  tm.tm_min = number(20, 2);
  tm.tm_sec = number(23, 2);
  if (text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' || text[22] != ':') return std::nullopt;
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_mon < 0 || tm.tm_year < 0 || tm.tm_hour < 0 || tm.tm_hour > 23 ||
      tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
    return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string format_http_date(std::chrono::system_clock::time_point time) {
  const std::time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[40];
  std::strftime(buffer, sizeof buffer, "%a, %d %b %Y %H:%M:%S GMT", &tm);  // the C locale's names
  return buffer;
}

}  // namespace orchard::cloud
