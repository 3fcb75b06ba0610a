#include "server/front_stage.h"

#include <arpa/inet.h>
#include <fcntl.h>
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
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "server/chunk_template.h"
#include "server/openai_protocol.h"

namespace orchard::server {
namespace {

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

// FrontServer (front_stage.h): the reception thread, the two worker pools and the connections
// handed between them.
class FrontStage final : public FrontServer {
 public:
  explicit FrontStage(size_t max_body) : max_body_(max_body) {
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
  ~FrontStage() override {
    finish();
    ::close(epoll_);
    ::close(wake_);
  }

  void widen_backlog() override { ::listen(svr_sock_, SOMAXCONN); }

  void finish() override {
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

}  // namespace

std::unique_ptr<FrontServer> FrontServer::create(size_t max_body) { return std::make_unique<FrontStage>(max_body); }

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

bool client_reset() {
  Connection* c = current_connection;
  if (!c) return false;
  char byte;
  const ssize_t n = ::recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

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

}  // namespace orchard::server
