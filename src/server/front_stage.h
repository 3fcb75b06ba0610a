// The front stage of `orchard serve`: connections wait in one thread (the reception, an epoll
// set), not in a thread each, and go to a worker only once a whole request header is buffered;
// its numbers and their reasons are at the top of front_stage.cpp. The API (http_server.cpp)
// registers its routes on a FrontServer and, while answering a request, asks whether its client
// is still there.
#pragma once
#include <httplib.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace orchard::server {

// An httplib::Server whose connections the front stage holds: routes, bind, listen and stop are
// httplib's.
class FrontServer : public httplib::Server {
 public:
  // `max_body`: the most bytes of a request's body (ServerOptions::max_body_bytes).
  static std::unique_ptr<FrontServer> create(size_t max_body);

  // httplib listens with a backlog of 5: a burst of clients (300 at once in the tests) overflows
  // it while the accept thread is busy, and each dropped SYN costs its client a 1 s retry.
  // Linux takes a second listen() on a listening socket as a new backlog.
  virtual void widen_backlog() = 0;

  // Ends every connection: the reception's at once, those being answered after kDrainTime
  // (their sockets are shut down: writes fail, so generations end as for clients that left).
  virtual void finish() = 0;
};

// Whether the client of the request this thread answers is still there, asked while there is
// nothing to write (the job is queued, prefills, or its text is held back). A client that
// finished sending (read EOF) may have left or only half-closed its side and still read: only a
// write tells. So the rule: a client is gone when a write to it fails or its connection is reset;
// once it has finished sending, a `probe` that changes nothing for the client (a space before a
// JSON body, an SSE comment line) is written at most every second, and a client that left
// resets the connection at it (seen at the next check, ~10-100 ms later).
bool client_present(httplib::DataSink& sink, std::string_view probe);

// Asked while a request's schema compiles, before anything is written: nothing can be probed yet,
// so only a reset or failed connection counts as gone (read EOF may be a half-close).
bool client_reset();

// The request's body, held to `max` bytes however it is framed (a Content-Length, chunks, a
// compressed encoding: the limit is on the decoded bytes). A refused body is not read further
// and its connection closes after the answer.
std::string read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                      size_t max);

}  // namespace orchard::server
