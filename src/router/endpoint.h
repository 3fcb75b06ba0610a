// The device endpoint of the hybrid router (issue 19, docs/router.md "The device endpoint"):
// `orchard serve --model LOCAL --cloud-relay URL` answers the OpenAI API as `orchard serve` does,
// and decides per chat or completion request whether the local engine answers it or the private
// cloud node does, through the encrypted client (cloud/client.h).
//
// Per request: the privacy class (header `x-orchard-privacy-class` or the body's `privacy_class`,
// the configuration's default otherwise), the texts that would leave (message contents, tool-call
// arguments, tool results, a completion's prompt) and the prompt's tokens under the device model
// go into router::decide(). Then:
//   device   the server's OpenAIHandler answers, as plain `orchard serve` would.
//   refuse   a 400 naming why the device cannot answer a request that may not leave it.
//   cloud    the body, its redacted values replaced by placeholders and `privacy_class` removed,
//            goes to the node; the answer comes back with the placeholders restored (in a stream,
//            across deltas). No first byte within cloud_deadline_ms, the cloud failing, or the
//            circuit breaker open (cloud_failures_to_pause failures in a row pause the cloud for
//            cloud_pause_s): the device answers, with the reason `cloud-unavailable`.
//   cascade  the device answers first, not streamed, with its tokens' log-probabilities; the
//            answer stands if its confidence passes cascade.threshold (streamed then, as one
//            delta), else the request goes to the cloud as above (and should the cloud fail, the
//            device's answer is given after all).
// Every answer carries `x-orchard-route: device|cloud` and `x-orchard-route-reason` (the
// decision's reasons, comma-separated); /metrics counts `orchard_router_requests_total` by route
// and reason; the audit log (a JSON line per request) records the time, route, reasons, privacy
// class, status and the PII types found, never any text of the request or the answer.
#pragma once
#include <memory>
#include <string>

#include "cloud/client.h"
#include "router/config.h"
#include "server/http_server.h"

namespace orchard::router {

struct EndpointOptions {
  RouterConfig config;
  cloud::CloudClientOptions cloud;  // relay (empty: no cloud, every request stays on the device)
  std::string audit_log;            // a file the audit lines are appended to; empty: none
};

// The request header that carries a privacy class.
inline constexpr const char* kPrivacyHeader = "x-orchard-privacy-class";

class DeviceRouter {
 public:
  explicit DeviceRouter(EndpointOptions options);
  ~DeviceRouter();
  DeviceRouter(const DeviceRouter&) = delete;
  DeviceRouter& operator=(const DeviceRouter&) = delete;

  // server::serve's route installer: the routed chat and completion routes, then the server's
  // own routes for everything else.
  void install(server::FrontServer& http, const server::ServedModel& served);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace orchard::router
