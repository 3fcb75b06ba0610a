// The router's decision for one request (issue 19, docs/router.md "Decision order"): privacy first,
// then capability, then confidence. A device endpoint calls decide() per request, before anything
// leaves the device; in cascade mode it calls accept_local_answer() once the local answer is done.
//
// Why this order: the privacy class and the PII rules are promises to the user, so nothing after
// them may override them; a request they pin to the device is answered there or refused, never
// sent to the cloud because the device cannot do it. Capability comes next because a request the
// device cannot answer gains nothing from a confidence estimate. Confidence is last: it only
// chooses between two routes that are both allowed and both able.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "router/config.h"
#include "router/pii.h"
#include "router/signals.h"

namespace orchard::router {

enum class Route { device, cloud, refuse };
std::string_view route_name(Route r);  // "device", "cloud", "refuse"

struct RouteRequest {
  // The request header's or the body's "privacy_class" (the header wins when both are given:
  // the caller picks); empty: the configuration's default_class.
  std::optional<std::string> privacy_class;
  std::vector<std::string> texts;  // what would leave the device: message contents, tool results
  std::string model;               // the "model" the request asks for
  bool tools = false;              // the request offers tools
  bool json_schema = false;        // response_format json_schema (or json_object)
  int64_t prompt_tokens = 0;       // the prompt as the device model tokenizes it
  int64_t max_tokens = -1;         // asked for; < 0: none
  int64_t device_context = 0;      // the device engine's context, used when the config's is 0
};

struct RoutedPii {
  PiiMatch match;
  size_t text = 0;  // index into RouteRequest::texts; match offsets are into that text
  PiiAction action = PiiAction::local;
};

struct Decision {
  Route route = Route::device;
  PrivacyClass privacy = PrivacyClass::device_only;
  // Stable machine strings, most decisive first: "privacy-device-only", "pii-local:card",
  // "context-exceeds-device", "tools-unsupported", "json-schema-unsupported",
  // "cloud-model-requested", "low-confidence-pre", "confident-pre", "cascade-pending",
  // "default-device".
  std::vector<std::string> reasons;
  std::string message;  // for `refuse`: a sentence for the client's 4xx
  std::vector<RoutedPii> pii;
  // When the request may go to the cloud (route cloud, or cascade pending): the texts as they
  // would leave, each value whose action is `redact` replaced by a placeholder, and the one
  // Redaction over all texts that restore() uses on the cloud's answer (placeholders are unique
  // across the texts: one value gets one placeholder everywhere).
  bool cascade_pending = false;
  std::vector<std::string> outgoing_texts;
  // ... and the "model" it would carry: the request's when it names one of cloud_models, none
  // otherwise (the cloud answers with its own). A name the device serves, such as a LoRA
  // adapter's, is the device's business and could tell the cloud who asks.
  std::optional<std::string> outgoing_model;
  Redaction redaction;
  std::optional<PreSignals> signals;
  // `pre` mode: the score compared with pre.threshold (pre_score: minus the fitted model's
  // predicted confidence, or the mean surprisal without a model).
  std::optional<double> pre_score;
};

// Throws orchard::Error for an unknown privacy class (the client's fault: 400) and in `pre` mode
// when the request may go to the cloud but `signals` is null (the caller's fault), and when the
// custom PII patterns fail on a text (too long for them: the caller keeps it on the device).
Decision decide(const RouteRequest& request, const RouterConfig& config, const PreSignals* signals);

// Cascade: whether the local answer stands (true) or the request goes to the cloud. The configured
// signal against cascade.threshold: mean_logprob and min_margin accept at >= threshold,
// mean_entropy (higher is less sure) at <= threshold. An empty answer (no token) is accepted: there
// is nothing to judge, and an empty answer is the model's choice (end of sequence at once).
bool accept_local_answer(const AnswerSignals& signals, const RouterConfig& config);

// {"route", "privacy_class", "reasons", "message"?, "pii": [{"type", "name"?, "text", "start",
// "end", "action"}], "redacted": N, "cascade_pending", "signals": {...} | null, "pre_score"?}. No value of
// the request's text appears in it (it is fit for an audit log).
nlohmann::json to_json(const Decision& decision);

}  // namespace orchard::router
