#include "server/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/epoll.h>
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/error.h"
#include "runtime/model_tokenizer.h"
#include "server/chat_service.h"
#include "server/chunk_template.h"
#include "server/metrics.h"
#include "server/request_channel.h"
#include "server/scheduler.h"

namespace orchard::server {
namespace {

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%llx%06llx", prefix, static_cast<unsigned long long>(unix_time()),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  return buf;
}

// Generated text may end in the middle of nothing worse than a replaced character, but token
// strings in logprobs can be partial UTF-8: never let dump() throw on them.
std::string to_text(const json& j) { return to_json_text(j); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(to_text(body), "application/json");
}

// Writes the gathered server-sent events as one HTTP chunk (one send for every token the
// scheduler produced since the last write) and empties `events`; false once the client is gone.
// With nothing to write (text held back while it may be a tool call) the connection is looked at.
bool client_present(httplib::DataSink& sink, std::string_view probe);
bool send_events(httplib::DataSink& sink, std::string& events, bool open) {
  const bool ok = open && (events.empty() ? client_present(sink, ":\n") : sink.write(events.data(), events.size()));
  events.clear();
  return ok;
}

void send_error(httplib::Response& res, const RequestError& e) {
  send_json(res, e.status, error_body(e.what(), e.status >= 500 ? "server_error" : "invalid_request_error", e.param, e.code));
}

json usage_json(const JobSummary& s) {
  return json{{"prompt_tokens", s.prompt_tokens},
              {"completion_tokens", s.completion_tokens},
              {"total_tokens", s.prompt_tokens + s.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", s.cached_prompt_tokens}}}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", new_id("call")}, {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments_json}}}};
    if (with_index) call["index"] = i;
    out.push_back(std::move(call));
  }
  return out;
}

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The front stage: connections wait in one thread, not in a thread each.
//
// httplib 0.11 gives an accepted connection a thread of its pool until the connection ends: 64
// clients that sent a request header slowly (or kept an idle keep-alive connection) held all 64
// threads, and /health went unanswered. Here one thread, the reception, holds every connection
// that is not being answered (new ones, idle keep-alive ones) in an epoll set, reads what they
// send without blocking, and hands a connection to a worker only once a complete request header
// is in its buffer. A worker answers that one request (httplib parses and routes it from the
// buffer) and gives the connection back. The numbers:
//  - a request header must be complete 10 s after the connection opened (or after the first
//    byte of a later request on a keep-alive connection), and within 64 KiB (else 431);
//  - an idle keep-alive connection is closed after 30 s;
//  - at most min(4096, open-file limit - 128) connections are open; at the cap a new one
//    pushes out the connection that has waited longest in the reception (a slow client's, as
//    a well-behaved client's header takes milliseconds);
//  - requests without a body (GET, HEAD: /health, /metrics, /v1/models) have 4 workers of their
//    own, so that nothing done to the API's POSTs (slow bodies, long generations) delays
//    /health; the rest have up to 64 (threads start as work comes);
//  - a request's body must arrive within 60 s of its header (4 MiB at 0.5 Mbit/s), each write
//    may wait 10 s for the client to read: a worker is held by one client for a bounded time;
//    a client that sends requests without reading the answers waits in the reception until
//    its earlier answers have left the send queue (64 KiB at most), for 10 s at most;
//  - on stop, answers in flight get 2 s, then their connections are shut down (their
//    generations end as their clients "leave"); every thread is joined.
// With 300 connections sending a header a byte at a time and 300 idle keep-alive connections
// open, /health answers in a few milliseconds (tests/server/hardening/network_test.py).

constexpr auto kHeaderTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(30);
constexpr auto kBodyTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(10);
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr auto kDrainTime = std::chrono::seconds(2);
constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr int kMaxUnsentOutput = 64 << 10;
constexpr size_t kLightWorkers = 4, kWorkers = 64;
constexpr int kMaxRequestsPerConnection = 1000;

int poll_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1000 * 1000));
}

struct Connection {
  explicit Connection(int fd) : fd(fd), since(Clock::now()), deadline(since + kHeaderTimeout) {}
  ~Connection() { ::close(fd); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const int fd;
  std::string in;         // bytes received and not yet consumed, from `pos`
  size_t pos = 0;
  size_t header_end = 0;  // once a header is complete: its end, relative to `pos`
  size_t body_cap = 0;    // the most bytes after the header the request may read
  bool light = false;     // no body: served by the light workers
  Clock::time_point since, deadline;
  bool idle = false;       // between requests of a keep-alive connection
  bool draining = false;   // being closed: its input is read and dropped until the peer ends
  bool peer_eof = false;   // the client finished sending (it may still read)
  bool close_after = false;  // the request was not read to its end: close after the answer
  bool write_failed = false;
  bool held = false;  // a request is buffered, but earlier answers were not yet read
  int requests = 0;
  Clock::time_point last_probe{};
};
using ConnectionPtr = std::shared_ptr<Connection>;

// A request header "\r\n\r\n"-terminated at `end` (relative to c.pos): drops what the API does
// not serve (Range: no resource is ranged, and a range would cut a JSON answer; Accept-Encoding:
// answers go uncompressed, so that the one-byte probes of a client's presence, see
// `client_present`, reach the wire), and notes the body's framing.
void prepare_header(Connection& c, size_t end, size_t max_body) {
  const std::string_view header(c.in.data() + c.pos, end);
  std::string kept;
  kept.reserve(header.size());
  std::optional<uint64_t> length;
  bool chunked = false, other_framing = false;
  size_t line_start = 0;
  while (line_start < header.size()) {
    size_t line_end = header.find('\n', line_start);
    line_end = line_end == std::string_view::npos ? header.size() : line_end + 1;
    const std::string_view line = header.substr(line_start, line_end - line_start);
    line_start = line_end;
    const size_t colon = line.find(':');
    std::string name(colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon));
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.remove_suffix(1);
    if (name == "range" || name == "accept-encoding") continue;
    if (name == "content-length") {
      uint64_t n = 0;
      bool ok = !value.empty() && value.size() <= 19;
      for (char ch : value) ok = ok && ch >= '0' && ch <= '9', n = n * 10 + static_cast<uint64_t>(ch - '0');
      length = ok ? n : UINT64_MAX;
    }
    if (name == "transfer-encoding") (value.size() == 7 && strncasecmp(value.data(), "chunked", 7) == 0 ? chunked : other_framing) = true;
    kept += line;
  }
  const std::string_view method = header.substr(0, header.find(' '));
  // httplib reads a POST without a length to the connection's end; a chunked body's framing
  // costs a few bytes per chunk. The handlers hold the decoded body to `max_body` exactly
  // (`read_body`); this cap ends the raw reading, also of a body httplib would skip.
  c.body_cap = chunked || other_framing || !length ? 2 * max_body + (64 << 10) : *length > max_body ? 0 : *length;
  c.light = (method == "GET" || method == "HEAD") && !chunked && !other_framing && length.value_or(0) == 0;
  c.header_end = kept.size();
  kept.append(c.in, c.pos + end);  // what follows (std::string::replace here trips GCC 12's -Wrestrict)
  c.in = std::move(kept), c.pos = 0;
}

// The connection a worker thread answers (set around each request), for the handlers' checks
// of the client's presence.
thread_local Connection* current_connection = nullptr;

// What httplib reads a request from and writes its answer to: the connection's buffer, then its
// socket, within the deadlines above.
class ConnectionStream : public httplib::Stream {
 public:
  explicit ConnectionStream(Connection& c) : c_(c), body_deadline_(Clock::now() + kBodyTimeout) {}

  bool is_readable() const override { return c_.pos < c_.in.size(); }
  // False once a write failed or the connection was reset (or shut down on stop), or when the
  // client has not taken anything for kWriteTimeout. A client that only finished sending is
  // still there: see client_present.
  bool is_writable() const override {
    if (c_.write_failed) return false;
    pollfd p{c_.fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kWriteTimeout).count())) <= 0) return false;
    return (p.revents & (POLLERR | POLLHUP | POLLNVAL)) == 0 && (p.revents & POLLOUT);
  }
  ssize_t read(char* ptr, size_t size) override {
    // The header was checked whole in the reception; what follows is body, up to its cap.
    if (read_ >= c_.header_end + c_.body_cap) {
      c_.close_after = true;
      return -1;
    }
    if (c_.pos >= c_.in.size() && !fill()) return c_.peer_eof && !c_.close_after ? 0 : -1;
    size = std::min({size, c_.in.size() - c_.pos, c_.header_end + c_.body_cap - read_});
    std::memcpy(ptr, c_.in.data() + c_.pos, size);
    c_.pos += size;
    read_ += size;
    return static_cast<ssize_t>(size);
  }
  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size && !c_.write_failed) {
      const ssize_t n = ::send(c_.fd, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{c_.fd, POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kWriteTimeout).count())) <= 0 ||
            (p.revents & (POLLERR | POLLHUP | POLLNVAL)))
          c_.write_failed = true;
      } else {
        c_.write_failed = true;
      }
    }
    return c_.write_failed ? -1 : static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  socket_t socket() const override { return c_.fd; }

 private:
  // Reads more of the request into the buffer; false at its end, on an error or past the
  // body's deadline.
  bool fill() {
    if (c_.peer_eof) return false;
    if (c_.pos > 0 && c_.pos == c_.in.size()) c_.in.clear(), c_.pos = 0;
    for (;;) {
      pollfd p{c_.fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, poll_ms(body_deadline_));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) {
        c_.close_after = true;  // too slow: the rest of the request is not read
        return false;
      }
      char buf[64 << 10];
      const ssize_t n = ::recv(c_.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        c_.in.append(buf, static_cast<size_t>(n));
        return true;
      }
      if (n == 0) {
        c_.peer_eof = true;
        return false;
      }
      if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        c_.close_after = true;
        return false;
      }
    }
  }
  void address(bool local, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ip.clear(), port = 0;
    if ((local ? ::getsockname : ::getpeername)(c_.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
    char text[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET) {
      const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
      ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text), port = ntohs(a.sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
      ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text), port = ntohs(a.sin6_port);
    }
    ip = text;
  }

  Connection& c_;
  const Clock::time_point body_deadline_;
  size_t read_ = 0;  // bytes of this request read, its header included
};

// Threads started as jobs come, up to `max`, kept for later jobs. stop() drops the jobs not
// started (their connections close) and joins the threads.
class WorkerPool {
 public:
  explicit WorkerPool(size_t max) : max_(max) {}
  ~WorkerPool() { stop(); }
  void submit(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    jobs_.push_back(std::move(job));
    if (idle_ == 0 && threads_.size() < max_) threads_.emplace_back([this] { run(); });
    else ready_.notify_one();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      jobs_.clear();
    }
    ready_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      ++idle_;
      ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (stopping_) return;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      job = nullptr;  // its connection, when not handed back, closes here
      lock.lock();
    }
  }

  const size_t max_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

// httplib's accept loop hands each socket to process_and_close_socket through the task queue:
// this queue runs it at once on the accept thread, and the server's override only passes the
// socket to the reception.
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

class FrontServer : public httplib::Server {
 public:
  explicit FrontServer(size_t max_body) : max_body_(max_body) {
    new_task_queue = [] { return new InlineQueue; };
    rlimit files{};
    const size_t fd_limit = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                                ? static_cast<size_t>(files.rlim_cur) : 4096;
    max_connections_ = std::clamp<size_t>(fd_limit > 256 ? fd_limit - 128 : fd_limit / 2, 16, 4096);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_ < 0 || wake_ < 0) fail("cannot create the server's event loop: ", std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
    reception_ = std::thread([this] { reception(); });
  }
  ~FrontServer() override {
    finish();
    ::close(epoll_);
    ::close(wake_);
  }

  // httplib listens with a backlog of 5: a burst of clients (300 at once in the tests) overflows
  // it while the accept thread is busy, and each dropped SYN costs its client a 1 s retry.
  // Linux takes a second listen() on a listening socket as a new backlog.
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }

  // Ends every connection: the reception's at once, those being answered after kDrainTime
  // (their sockets are shut down: writes fail, so generations end as for clients that left).
  void finish() {
    if (finished_) return;
    finished_ = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake();
    reception_.join();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      handed_.clear();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!idle_.wait_for(lock, kDrainTime, [&] { return busy_.empty(); }))
        for (Connection* c : busy_) ::shutdown(c->fd, SHUT_RDWR);
    }
    light_.stop();
    workers_.stop();
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    const int flags = ::fcntl(sock, F_GETFL);
    ::fcntl(sock, F_SETFL, flags | O_NONBLOCK);
    int one = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    hand_back(std::make_shared<Connection>(sock), true);
    return true;
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_, &one, sizeof one);
  }
  // A connection for the reception: a new one, or one whose request was answered.
  void hand_back(ConnectionPtr c, bool is_new) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!is_new) busy_.erase(c.get());
      if (stopping_) {
        if (!is_new) idle_.notify_all();
        return;  // closes it
      }
      handed_.push_back(std::move(c));
      if (!is_new) idle_.notify_all();
    }
    wake();
  }

  void reception() {
    std::unordered_map<int, ConnectionPtr> waiting;
    std::vector<epoll_event> events(256);
    auto drop = [&](int fd) {
      ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
      waiting.erase(fd);
    };
    for (;;) {
      const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 100);
      std::vector<ConnectionPtr> handed;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;  // `waiting` closes every connection it holds
        handed.swap(handed_);
      }
      for (ConnectionPtr& c : handed) {
        if (c->draining) c->deadline = Clock::now() + kLingerTime;
        else if (c->requests > 0 && c->pos == c->in.size()) c->idle = true, c->since = Clock::now(), c->deadline = c->since + kIdleTimeout;
        else if (c->requests > 0) c->since = Clock::now(), c->deadline = c->since + kHeaderTimeout;
        if (!c->draining && c->requests == 0) {
          // At the cap, the connection that has waited longest here makes room.
          if (waiting.size() + busy_count() >= max_connections_) {
            auto oldest = waiting.end();
            for (auto it = waiting.begin(); it != waiting.end(); ++it)
              if (oldest == waiting.end() || it->second->since < oldest->second->since) oldest = it;
            if (oldest == waiting.end()) continue;  // all are being answered: refuse this one
            drop(oldest->first);
          }
        }
        const int fd = c->fd;
        const Next next = next_step(*c);
        if (next == Next::dispatch) dispatch(std::move(c));
        if (next != Next::wait) continue;  // dispatched, or closed here
        if (!c->held) {
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = fd;
          ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
        }
        waiting[fd] = std::move(c);
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_) {
          uint64_t count;
          [[maybe_unused]] const ssize_t r = ::read(wake_, &count, sizeof count);
          continue;
        }
        const auto it = waiting.find(fd);
        if (it == waiting.end()) continue;
        Connection& c = *it->second;
        const Next next = receive(c) ? next_step(c) : Next::close;
        if (next == Next::wait && c.held) ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
        if (next == Next::close) drop(fd);
        if (next == Next::dispatch) {
          ConnectionPtr taken = std::move(it->second);
          ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
          waiting.erase(it);
          dispatch(std::move(taken));
        }
      }
      const auto now = Clock::now();
      for (auto it = waiting.begin(); it != waiting.end();) {
        Connection& c = *it->second;
        if (c.deadline <= now) {
          ::epoll_ctl(epoll_, EPOLL_CTL_DEL, it->first, nullptr);
          it = waiting.erase(it);
        } else if (c.held && output_sent(c.fd)) {
          c.held = false;
          ConnectionPtr taken = std::move(it->second);
          it = waiting.erase(it);
          dispatch(std::move(taken));
        } else {
          ++it;
        }
      }
    }
  }

  size_t busy_count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return busy_.size();
  }

  // Reads what the client sent; false when the connection is to be closed.
  bool receive(Connection& c) {
    char buf[16 << 10];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        if (c.draining) continue;
        if (c.idle) c.idle = false, c.deadline = Clock::now() + kHeaderTimeout;
        c.in.append(buf, static_cast<size_t>(n));
        if (c.in.size() - c.pos > kMaxHeaderBytes) return true;  // take_request decides
        continue;
      }
      if (n == 0) {
        c.peer_eof = true;
        return !c.draining;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
  }

  enum class Next { wait, dispatch, close };
  // After news from a connection in the reception: whether it waits, goes to a worker or closes.
  Next next_step(Connection& c) {
    if (c.draining) return Next::wait;  // until its end or deadline
    if (!take_request(c)) return c.draining || !c.peer_eof ? Next::wait : Next::close;
    // A client that does not read its answers (while it sends request after request) waits
    // here, not in a worker's write: its next request is taken once its earlier answers are
    // out of the send queue, checked every 100 ms, for kWriteTimeout at most.
    if (!output_sent(c.fd)) {
      if (!c.held) c.held = true, c.deadline = Clock::now() + kWriteTimeout;
      return Next::wait;
    }
    return Next::dispatch;
  }
  static bool output_sent(int fd) {
    int queued = 0;
    return ::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued <= kMaxUnsentOutput;
  }

  // Whether a whole request header is buffered (prepared for httplib once).
  bool take_request(Connection& c) {
    if (c.header_end > 0) return true;
    const std::string_view pending(c.in.data() + c.pos, c.in.size() - c.pos);
    const size_t end = pending.find("\r\n\r\n");
    if (end == std::string_view::npos || end + 4 > kMaxHeaderBytes) {
      if (pending.size() <= kMaxHeaderBytes) return false;
      static const std::string too_large = [] {
        const std::string body = to_json_text(error_body("the request header is too large", "invalid_request_error"));
        return str_cat("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
                       "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
      }();
      [[maybe_unused]] const ssize_t n = ::send(c.fd, too_large.data(), too_large.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(c.fd, SHUT_WR);
      c.draining = true, c.in.clear(), c.pos = 0, c.deadline = Clock::now() + kLingerTime;
      return false;
    }
    prepare_header(c, end + 4, max_body_);
    return true;
  }

  void dispatch(ConnectionPtr c) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_.insert(c.get());
    }
    WorkerPool& pool = c->light ? light_ : workers_;
    pool.submit([this, c = std::move(c)]() mutable { answer(std::move(c)); });
  }

  // On a worker: one request, then the connection goes back to the reception (or closes).
  void answer(ConnectionPtr c) {
    c->close_after = false;
    const bool last = ++c->requests >= kMaxRequestsPerConnection;
    bool closed = false, ok = false;
    {
      ConnectionStream stream(*c);
      current_connection = c.get();
      ok = process_request(stream, last || stopping(), closed, nullptr);
      current_connection = nullptr;
    }
    c->in.erase(0, c->pos), c->pos = 0, c->header_end = 0;
    if (!ok || closed || last || c->write_failed) {
      release(std::move(c));
    } else if (c->close_after) {
      // Part of the request was not read: close, but read and drop what the client still sends
      // for a moment, so that its socket is not reset before it has read the answer.
      ::shutdown(c->fd, SHUT_WR);
      c->draining = true, c->in.clear();
      hand_back(std::move(c), false);
    } else {
      hand_back(std::move(c), false);
    }
  }
  void release(ConnectionPtr c) {
    std::lock_guard<std::mutex> lock(mutex_);
    busy_.erase(c.get());
    idle_.notify_all();
  }
  bool stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopping_;
  }

  const size_t max_body_;
  size_t max_connections_ = 0;
  int epoll_ = -1, wake_ = -1;
  std::mutex mutex_;
  std::condition_variable idle_;          // busy_ shrank
  std::vector<ConnectionPtr> handed_;     // for the reception
  std::unordered_set<Connection*> busy_;  // with a worker
  bool stopping_ = false, finished_ = false;
  WorkerPool light_{kLightWorkers}, workers_{kWorkers};
  std::thread reception_;
};

// Whether the client of the request this thread answers is still there, asked while there is
// nothing to write (the job is queued, prefills, or its text is held back). A client that
// finished sending (read EOF) may have left or only half-closed its side and still read: only a
// write tells. So the rule: a client is gone when a write to it fails or its connection is reset;
// once it has finished sending, a `probe` that changes nothing for the client (a space before a
// JSON body, an SSE comment line) is written at most every second, and a client that left
// resets the connection at it (seen at the next check, ~10-100 ms later).
bool client_present(httplib::DataSink& sink, std::string_view probe) {
  if (!sink.is_writable()) return false;
  Connection* c = current_connection;
  if (!c) return true;
  if (!c->peer_eof) {
    char byte;
    const ssize_t n = ::recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) c->peer_eof = true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
  }
  if (!c->peer_eof) return true;
  const auto now = Clock::now();
  if (now - c->last_probe < std::chrono::seconds(1)) return true;
  c->last_probe = now;
  return sink.write(probe.data(), probe.size());
}

// Asked while a request's schema compiles, before anything is written: nothing can be probed yet,
// so only a reset or failed connection counts as gone (read EOF may be a half-close).
bool client_reset() {
  Connection* c = current_connection;
  if (!c) return false;
  char byte;
  const ssize_t n = ::recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// The request's body, held to `max` bytes however it is framed (a Content-Length, chunks, a
// compressed encoding: the limit is on the decoded bytes). A refused body is not read further
// and its connection closes after the answer.
std::string read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                      size_t max) {
  auto refuse = [](int status, std::string message) {
    if (current_connection) current_connection->close_after = true;
    return RequestError(status, std::move(message));
  };
  if (req.is_multipart_form_data()) throw refuse(415, "multipart bodies are not supported: send JSON");
  std::string body;
  bool too_large = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > max) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (too_large || res.status == 413) throw refuse(413, str_cat("the request body is larger than ", max, " bytes"));
  if (!ok) throw refuse(400, "the request body could not be read");
  return body;
}

// Written while a client that finished sending waits (client_present): what each kind of answer
// ignores before or between its events.
constexpr std::string_view kJsonProbe = " ", kSseProbe = ":\n";

class Api {
 public:
  Api(ChatService& service, Scheduler& scheduler, ChannelWaker& waker, Clock::duration stream_interval)
      : service_(service), scheduler_(scheduler), waker_(waker), stream_interval_(stream_interval) {}

  void chat(const std::string& body, httplib::Response& res) {
    const ChatRequest request = parse_chat_request(parse_body(body));
    PreparedJob prepared = service_.prepare(request, client_reset);
    auto channel = submit(prepared, request.stream);
    if (request.stream) stream_chat(res, request, prepared, channel);
    else answer_chat(res, request, prepared, channel);
  }

  void completion(const std::string& body, httplib::Response& res) {
    const CompletionRequest request = parse_completion_request(parse_body(body));
    PreparedJob prepared = service_.prepare(request);
    auto channel = submit(prepared, request.stream);
    const std::string id = new_id("cmpl"), echo = request.echo ? request.prompt : "";
    const int64_t created = unix_time();  // one time for every chunk of the completion
    auto choice = [](const std::string& text, const json& finish) {
      return json{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    };
    // By value: the stream's provider runs after this function has returned.
    auto envelope = [id, created, this](json choices) {
      return json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", service_.model_name()}, {"choices", std::move(choices)}};
    };
    if (!request.stream) {
      answer_when_done(res, channel, [=](const std::vector<TokenStep>& steps, const JobSummary& summary) {
        std::string text = echo;
        for (const TokenStep& step : steps) text += step.text;
        json body = envelope(json::array({choice(text, finish_reason_name(finish_reason_of(summary.stop)))}));
        body["usage"] = usage_json(summary);
        return body;
      });
      return;
    }
    const bool usage = request.include_usage;
    const auto text_chunk = std::make_shared<const ChunkTemplate>(envelope(json::array({choice(ChunkTemplate::kSlot, nullptr)})));
    res.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      std::string events;
      if (!echo.empty()) text_chunk->append_event(events, echo);  // goes out with the first token
      bool open = true;
      std::vector<TokenStep> steps;
      while (channel->take(steps, [&sink] { return client_present(sink, kSseProbe); })) {
        std::string text;
        for (const TokenStep& step : steps) text += step.text;
        if (!text.empty()) text_chunk->append_event(events, text);
        open = send_events(sink, events, open);
        if (!open) channel->cancel();
      }
      const JobSummary summary = channel->summary();
      // The status is out: a job that failed says so in an error event, as the chat stream does.
      if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
      append_event(events, to_text(envelope(json::array({choice("", finish_reason_name(finish_reason_of(summary.stop)))}))));
      if (usage) {
        json last = envelope(json::array());
        last["usage"] = usage_json(summary);
        append_event(events, to_text(last));
      }
      append_event(events, "[DONE]");
      send_events(sink, events, open);
      sink.done();
      return true;
    });
  }

 private:
  std::shared_ptr<RequestChannel> submit(const PreparedJob& prepared, bool stream) {
    auto channel = std::make_shared<RequestChannel>(waker_, stream ? stream_interval_ : Clock::duration{});
    auto job = std::make_shared<GenerationJob>();
    job->prompt = prepared.prompt;
    job->options = prepared.options;
    job->on_step = [channel](const TokenStep& step) { return channel->push(step); };
    job->abandoned = [channel] { return channel->cancelled(); };
    job->on_done = [channel](const JobSummary& summary) { channel->close(summary); };
    scheduler_.submit(job);
    return channel;
  }

  json chat_envelope(const std::string& id, int64_t created, const char* object, json choice) const {
    return json{{"id", id}, {"object", object}, {"created", created}, {"model", service_.model_name()},
                {"system_fingerprint", "orchard"}, {"choices", json::array({std::move(choice)})}};
  }

  // A response that is not streamed. Its status is known once the job has started: a job the
  // scheduler refuses ends before its first token, with its error. A job still running then
  // finishes in a content provider, the one place where httplib 0.11 shows the connection: a
  // client that leaves before the end cancels its generation.
  using Answer = std::function<json(const std::vector<TokenStep>&, const JobSummary&)>;
  void answer_when_done(httplib::Response& res, std::shared_ptr<RequestChannel> channel, Answer answer) {
    channel->wait_started();
    std::vector<TokenStep> steps;
    if (channel->take_all(steps, Clock::duration::zero())) {
      const JobSummary summary = channel->summary();
      if (!summary.error.empty()) throw RequestError(500, summary.error);
      send_json(res, 200, answer(steps, summary));
      return;
    }
    res.set_chunked_content_provider("application/json", [channel, answer](size_t, httplib::DataSink& sink) {
      std::vector<TokenStep> steps;
      while (!channel->take_all(steps, std::chrono::milliseconds(10)))
        if (!client_present(sink, kJsonProbe)) {
          channel->cancel();
          return false;
        }
      const JobSummary summary = channel->summary();
      if (!summary.error.empty()) return false;  // the status is out: only a cut connection tells
      const std::string body = to_text(answer(steps, summary));
      sink.write(body.data(), body.size());
      sink.done();
      return true;
    });
  }

  void answer_chat(httplib::Response& res, const ChatRequest& request, const PreparedJob& prepared,
                   std::shared_ptr<RequestChannel> channel) {
    const bool logprobs = request.logprobs, tools = prepared.tools_enabled;
    answer_when_done(res, channel, [=, this](const std::vector<TokenStep>& steps, const JobSummary& summary) {
      std::string text;
      json token_logprobs = json::array();
      for (const TokenStep& step : steps) {
        text += step.text;
        if (logprobs && step.token >= 0) token_logprobs.push_back(service_.token_logprob_json(step));
      }
      json message = {{"role", "assistant"}, {"content", text}};
      FinishReason finish = finish_reason_of(summary.stop);
      if (tools) {
        ParsedReply reply = parse_tool_calls(text);
        if (!reply.tool_calls.empty()) {
          message["content"] = reply.content.empty() ? json(nullptr) : json(reply.content);
          message["tool_calls"] = tool_calls_json(reply.tool_calls, false);
          finish = FinishReason::tool_calls;
        }
      }
      json choice = {{"index", 0}, {"message", message}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(finish)}};
      if (logprobs) choice["logprobs"] = {{"content", token_logprobs}};
      json body = chat_envelope(new_id("chatcmpl"), unix_time(), "chat.completion", choice);
      body["usage"] = usage_json(summary);
      return body;
    });
  }

  void stream_chat(httplib::Response& res, const ChatRequest& request, const PreparedJob& prepared,
                   std::shared_ptr<RequestChannel> channel) {
    const std::string id = new_id("chatcmpl");
    const int64_t created = unix_time();  // one time for every chunk of the completion
    const bool tools = prepared.tools_enabled, logprobs = request.logprobs, usage = request.include_usage;
    auto chunk_json = [id, created, this](json delta, json finish, json lp = nullptr) {
      json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(lp)}, {"finish_reason", std::move(finish)}};
      return chat_envelope(id, created, "chat.completion.chunk", std::move(choice));
    };
    const auto content_chunk = std::make_shared<const ChunkTemplate>(chunk_json({{"content", ChunkTemplate::kSlot}}, nullptr));
    res.set_chunked_content_provider("text/event-stream", [=, this](size_t, httplib::DataSink& sink) {
      std::string events;
      auto chunk = [&](json delta, json finish, json lp = nullptr) {
        append_event(events, to_text(chunk_json(std::move(delta), std::move(finish), std::move(lp))));
      };
      chunk({{"role", "assistant"}, {"content", ""}}, nullptr);  // goes out with the first token
      bool open = true;
      // With tools, text that may be the start of a tool call is held until that is decided.
      std::string held, full;
      bool holding = tools;
      std::vector<TokenStep> steps;
      while (channel->take(steps, [&sink] { return client_present(sink, kSseProbe); })) {
        // The tokens taken together go out as one chunk (their logprobs in its list).
        std::string text;
        json token_logprobs = json::array();
        for (const TokenStep& step : steps) {
          full += step.text;
          std::string out = step.text;
          if (holding) {
            held += step.text;
            if (may_start_tool_call(held)) out.clear();
            else out = std::move(held), holding = false;
          }
          text += out;
          if (logprobs && step.token >= 0) token_logprobs.push_back(service_.token_logprob_json(step));
        }
        if (!token_logprobs.empty())
          chunk({{"content", text}}, nullptr, json{{"content", std::move(token_logprobs)}});
        else if (!text.empty())
          content_chunk->append_event(events, text);
        open = send_events(sink, events, open);
        if (!open) channel->cancel();
      }
      const JobSummary summary = channel->summary();
      FinishReason finish = finish_reason_of(summary.stop);
      if (holding && !held.empty()) {
        ParsedReply reply = parse_tool_calls(full);
        if (!reply.tool_calls.empty()) {
          if (!reply.content.empty()) chunk({{"content", reply.content}}, nullptr);
          chunk({{"tool_calls", tool_calls_json(reply.tool_calls, true)}}, nullptr);
          finish = FinishReason::tool_calls;
        } else {
          chunk({{"content", held}}, nullptr);
        }
      }
      if (!summary.error.empty()) append_event(events, to_text(error_body(summary.error, "server_error")));
      chunk(json::object(), finish_reason_name(finish));
      if (usage) {
        json last = chat_envelope(id, created, "chat.completion.chunk", nullptr);
        last["choices"] = json::array();
        last["usage"] = usage_json(summary);
        append_event(events, to_text(last));
      }
      append_event(events, "[DONE]");
      send_events(sink, events, open);
      sink.done();
      return true;
    });
  }

  ChatService& service_;
  Scheduler& scheduler_;
  ChannelWaker& waker_;
  const Clock::duration stream_interval_;  // the least time between two writes of one stream
};

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

void serve(const std::string& model_path, const ServerOptions& options, const std::function<void(int)>& on_ready,
           const std::function<bool()>& should_stop) {
  FrontServer http(options.max_body_bytes);
  // httplib's default options set SO_REUSEPORT, with which a second server on the same port
  // binds too and the kernel splits the connections between the two. SO_REUSEADDR only lets a
  // restarted server bind while old connections linger in TIME_WAIT.
  http.set_socket_options([](socket_t sock) {
    int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  // Bound before the model loads: a port in use fails at once.
  int port = options.port;
  errno = 0;
  if (port == 0) port = http.bind_to_any_port(options.host);
  else if (!http.bind_to_port(options.host, port)) port = -1;
  if (port < 0)
    fail("cannot listen on ", options.host, ":", options.port, errno ? str_cat(": ", std::strerror(errno)) : "",
         errno == EADDRINUSE ? " (another server is on that port)" : "");
  http.widen_backlog();

  auto model = Model::load(model_path, {.kernels = options.kernels, .memory_budget = options.memory_budget});
  auto tokenizer = load_model_tokenizer(*model, options.tokenizer_path);
  Metrics metrics;
  ChannelWaker waker;  // outlives the scheduler, which pushes tokens until it stops
  Scheduler scheduler(model, tokenizer, options.parallel, options.n_ctx, options.kernels, options.threads,
                      options.kv_cache, metrics);
  ChatService service(model, tokenizer, base_name(model_path), scheduler.n_ctx());
  Api api(service, scheduler, waker, std::chrono::microseconds(options.stream_interval_us));

  http.set_payload_max_length(options.max_body_bytes);
  http.set_tcp_nodelay(true);  // streamed tokens are small writes: never wait on Nagle
  auto guarded = [&](void (Api::*handler)(const std::string&, httplib::Response&)) {
    return [&, handler](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      try {
        (api.*handler)(read_body(req, res, reader, options.max_body_bytes), res);
      } catch (const RequestError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_json(res, 500, error_body(std::string("internal error: ") + e.what(), "server_error"));
      }
    };
  };
  http.Post("/v1/chat/completions", guarded(&Api::chat));
  http.Post("/v1/completions", guarded(&Api::completion));
  http.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, json{{"object", "list"},
                             {"data", json::array({{{"id", service.model_name()}, {"object", "model"},
                                                    {"created", unix_time()}, {"owned_by", "orchard"}}})}});
  });
  http.Get("/health", [&](const httplib::Request&, httplib::Response& res) { send_json(res, 200, json{{"status", "ok"}}); });
  http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
  });
  // Statuses httplib sets itself (unknown route, body too large, bad request line) get an
  // OpenAI-style error body too.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 404 ? str_cat("no route ", req.method, " ", req.path)
                                : res.status == 413 ? "the request body is too large"
                                                    : "the request could not be processed";
    send_json(res, res.status, error_body(message, "invalid_request_error"));
  });
  http.set_logger([&](const httplib::Request& req, const httplib::Response& res) { metrics.count_request(req.path, res.status); });

  std::atomic<bool> stopped{false};
  std::thread watcher([&] {
    while (!stopped && !should_stop()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stopped) return;
    // A backstop: the stop below ends every connection within seconds (FrontServer::finish);
    // should a generation not end, the process still does.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      std::fprintf(stderr, "orchard: still stopping after 10 s; exiting\n");
      std::_Exit(1);
    }).detach();
    // httplib ignores a stop() before its accept loop runs (a signal during the model's load).
    while (!stopped && !http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!stopped) http.stop();
  });
  if (on_ready) on_ready(port);
  http.listen_after_bind();
  stopped = true;
  watcher.join();
  http.finish();
}

}  // namespace orchard::server
