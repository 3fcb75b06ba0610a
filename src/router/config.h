// The hybrid router's configuration (issue 19, docs/router.md): the privacy class a request gets
// when it names none, what to do with each kind of PII, what the device model can answer, which
// model names mean the cloud, and the confidence mode with its threshold. A JSON file, parsed
// strictly: an unknown key, a wrong type or a value out of range is an orchard::Error naming the
// key's path ("pii.card", "cascade.signal"), because a typo in a privacy rule must never quietly
// fall back to a default.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "router/pii.h"
#include "router/signals.h"

namespace orchard::router {

enum class PrivacyClass { device_only, private_cloud_allowed };
// What a PII value does to the request: keep it on the device, replace it with a placeholder
// before it leaves, or let it leave as it is.
enum class PiiAction { local, redact, allow };
enum class RouterMode { off, pre, cascade };
enum class CascadeSignal { mean_logprob, min_margin, mean_entropy };

std::string_view privacy_class_name(PrivacyClass c);  // "device-only", "private-cloud-allowed"
std::string_view pii_action_name(PiiAction a);        // "local", "redact", "allow"
std::string_view router_mode_name(RouterMode m);      // "off", "pre", "cascade"
std::string_view cascade_signal_name(CascadeSignal s);  // "mean_logprob", "min_margin", "mean_entropy"
// The class a request names (a header or the body's "privacy_class"); an unknown name is an
// orchard::Error naming `what` (the caller answers 400 with it).
PrivacyClass parse_privacy_class(std::string_view name, std::string_view what = "privacy_class");

inline constexpr size_t kBuiltinPiiTypes = 7;  // PiiType::email .. PiiType::ipv6

struct CustomPiiRule {
  std::string name;
  std::string pattern;  // ECMAScript std::regex, no back-references (pii.h's custom patterns)
  PiiAction action = PiiAction::local;
};

struct RouterConfig {
  // Nothing leaves the device unless the configuration or the request says it may.
  PrivacyClass default_class = PrivacyClass::device_only;
  // Indexed by PiiType (email, phone, card, iban, us_ssn, ipv4, ipv6).
  std::array<PiiAction, kBuiltinPiiTypes> pii = {PiiAction::redact, PiiAction::redact, PiiAction::local,
                                                 PiiAction::local,  PiiAction::local,  PiiAction::allow,
                                                 PiiAction::allow};
  std::vector<CustomPiiRule> custom;
  int64_t device_context = 0;  // tokens; 0: the device model's (the engine's context)
  bool device_tools = true;        // the local engine constrains tool calls (server/chat_service)
  bool device_json_schema = true;  // and JSON Schema response formats
  std::vector<std::string> cloud_models;
  RouterMode mode = RouterMode::off;
  // `pre` sends a prompt to the cloud when its score is above the threshold: minus the fitted
  // model's predicted confidence ("pre.features" and "pre.bias", `orchard router calibrate`), or,
  // for a configuration without a model, the prompt's mean surprisal (nats).
  double pre_threshold = 0;
  PreModel pre_model;
  double cascade_threshold = 0;
  CascadeSignal cascade_signal = CascadeSignal::mean_logprob;
  int64_t cloud_deadline_ms = 2000;
  // The endpoint's circuit breaker: after this many cloud failures in a row, requests are not
  // sent to the cloud for cloud_pause_s seconds (then one is tried again).
  int64_t cloud_failures_to_pause = 3;
  int64_t cloud_pause_s = 30;

  PiiAction action_for(const PiiMatch& match) const;
};

// Caps on the configuration text (it is small; a wrong path must not fill memory).
inline constexpr size_t kMaxRouterConfigBytes = 1 << 20;
inline constexpr size_t kMaxCustomPatterns = 64;

// `what` names the input in errors (a file name).
RouterConfig parse_router_config(std::string_view text, std::string_view what = "router config");
RouterConfig load_router_config(const std::string& path);
// The configuration as JSON, every key written (parse_router_config reads it back equal).
nlohmann::json to_json(const RouterConfig& config);
// find_pii's options: every built-in type (an allowed type is still looked for, so that its values
// are reported and, by find_pii's overlap order, never read as another type: an allowed e-mail's
// digits are no phone number), and the custom patterns.
PiiOptions pii_options(const RouterConfig& config);

}  // namespace orchard::router
