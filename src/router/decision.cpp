#include "router/decision.h"

#include <algorithm>
#include <array>

#include "base/error.h"

namespace orchard::router {

std::string_view route_name(Route r) {
  switch (r) {
    case Route::device: return "device";
    case Route::cloud: return "cloud";
    case Route::refuse: return "refuse";
  }
  return "?";
}

namespace {

void add_reason(Decision& d, std::string reason) {
  if (std::find(d.reasons.begin(), d.reasons.end(), reason) == d.reasons.end()) d.reasons.push_back(std::move(reason));
}

std::string pii_label(const PiiMatch& m) {
  return m.type == PiiType::custom ? "custom:" + m.name : std::string(pii_type_name(m.type));
}

bool names_cloud_model(const RouteRequest& request, const RouterConfig& config) {
  return !request.model.empty() &&
         std::find(config.cloud_models.begin(), config.cloud_models.end(), request.model) != config.cloud_models.end();
}

// What would leave for the cloud: the texts and the model name (Decision::outgoing_model). All
// texts are redacted as one, so that placeholders are numbered across them: the texts joined by a
// byte that none of them contains (placeholders are "[A-Z0-9_]", never a control byte), redacted,
// then split at that byte again.
void prepare_outgoing(Decision& d, const RouteRequest& request, const RouterConfig& config) {
  if (names_cloud_model(request, config)) d.outgoing_model = request.model;
  char separator = 0;
  for (char c : std::string_view("\x1e\x1f\x1d\x1c\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f")) {
    bool used = false;
    for (const std::string& t : request.texts) used = used || t.find(c) != std::string::npos;
    if (!used) {
      separator = c;
      break;
    }
  }
  if (separator == 0) fail("router: the request's texts use every separator byte; it cannot be redacted");
  std::string joined;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < request.texts.size(); ++i) {
    if (i) joined += separator;
    offsets.push_back(joined.size());
    joined += request.texts[i];
  }
  std::vector<PiiMatch> to_redact;
  for (const RoutedPii& p : d.pii) {
    if (p.action != PiiAction::redact) continue;
    PiiMatch m = p.match;
    m.start += offsets[p.text];
    m.end += offsets[p.text];
    to_redact.push_back(std::move(m));
  }
  d.redaction = redact(joined, to_redact);
  d.outgoing_texts.clear();
  size_t from = 0;
  for (size_t i = 0; i < request.texts.size(); ++i) {
    const size_t to = i + 1 < request.texts.size() ? d.redaction.text.find(separator, from) : d.redaction.text.size();
    d.outgoing_texts.push_back(d.redaction.text.substr(from, to - from));
    from = to + 1;
  }
  // The joined text is the restore() key only; the client's texts never contain the separator.
  d.redaction.text.clear();
}

}  // namespace

Decision decide(const RouteRequest& request, const RouterConfig& config, const PreSignals* signals) {
  Decision d;
  d.privacy = request.privacy_class ? parse_privacy_class(*request.privacy_class) : config.default_class;
  if (signals) d.signals = *signals;

  // 1. Privacy: the class, then every PII value with its action.
  const PiiOptions options = pii_options(config);
  bool pinned = d.privacy == PrivacyClass::device_only;
  if (pinned) add_reason(d, "privacy-device-only");
  for (size_t i = 0; i < request.texts.size(); ++i) {
    for (PiiMatch& m : find_pii(request.texts[i], options)) {
      const PiiAction action = config.action_for(m);
      if (action == PiiAction::local) {
        pinned = true;
        add_reason(d, "pii-local:" + pii_label(m));
      }
      d.pii.push_back(RoutedPii{std::move(m), i, action});
    }
  }

  // 2. Capability: what the device cannot answer.
  const int64_t context = config.device_context > 0 ? config.device_context : request.device_context;
  // A request without max_tokens still needs room for one generated token.
  const int64_t needed = request.prompt_tokens + std::max<int64_t>(request.max_tokens, 1);
  std::vector<std::string> incapable;
  if (context > 0 && needed > context) incapable.push_back("context-exceeds-device");
  if (request.tools && !config.device_tools) incapable.push_back("tools-unsupported");
  if (request.json_schema && !config.device_json_schema) incapable.push_back("json-schema-unsupported");
  if (names_cloud_model(request, config)) incapable.push_back("cloud-model-requested");

  if (pinned) {
    // Pinned to the device: answered there, or refused. Never the cloud.
    if (!incapable.empty()) {
      d.route = Route::refuse;
      std::string pins, cannot;
      for (const std::string& r : d.reasons) pins += (pins.empty() ? "" : ", ") + r;
      for (const std::string& r : incapable) cannot += (cannot.empty() ? "" : ", ") + r;
      for (std::string& r : incapable) add_reason(d, std::move(r));
      d.message = "the request must stay on this device (" + pins + ") and the device cannot answer it (" + cannot + ")";
    } else {
      d.route = Route::device;
    }
    return d;
  }
  if (!incapable.empty()) {
    d.route = Route::cloud;
    for (std::string& r : incapable) add_reason(d, std::move(r));
    prepare_outgoing(d, request, config);
    return d;
  }

  // 3. Confidence: both routes are allowed and able.
  switch (config.mode) {
    case RouterMode::off:
      d.route = Route::device;
      add_reason(d, "default-device");
      break;
    case RouterMode::pre:
      if (!signals) fail("router: pre mode needs the prompt's signals");
      d.pre_score = pre_score(*signals, config.pre_model);
      if (*d.pre_score > config.pre_threshold) {
        d.route = Route::cloud;
        add_reason(d, "low-confidence-pre");
        prepare_outgoing(d, request, config);
      } else {
        d.route = Route::device;
        add_reason(d, "confident-pre");
      }
      break;
    case RouterMode::cascade:
      d.route = Route::device;
      d.cascade_pending = true;
      add_reason(d, "cascade-pending");
      prepare_outgoing(d, request, config);
      break;
  }
  return d;
}

bool accept_local_answer(const AnswerSignals& s, const RouterConfig& config) {
  if (s.tokens == 0) return true;
  switch (config.cascade_signal) {
    case CascadeSignal::mean_logprob: return s.mean_logprob >= config.cascade_threshold;
    case CascadeSignal::min_margin: return s.min_margin >= config.cascade_threshold;
    case CascadeSignal::mean_entropy: return s.mean_entropy <= config.cascade_threshold;
  }
  return true;
}

nlohmann::json to_json(const Decision& d) {
  nlohmann::json pii = nlohmann::json::array();
  for (const RoutedPii& p : d.pii) {
    nlohmann::json m = {{"type", pii_type_name(p.match.type)},
                        {"text", p.text},
                        {"start", p.match.start},
                        {"end", p.match.end},
                        {"action", pii_action_name(p.action)}};
    if (p.match.type == PiiType::custom) m["name"] = p.match.name;
    pii.push_back(std::move(m));
  }
  nlohmann::json out = {{"route", route_name(d.route)},
                        {"privacy_class", privacy_class_name(d.privacy)},
                        {"reasons", d.reasons},
                        {"pii", pii},
                        {"redacted", d.redaction.placeholders.size()},
                        {"cascade_pending", d.cascade_pending},
                        {"signals", d.signals ? to_json(*d.signals) : nlohmann::json(nullptr)}};
  if (!d.message.empty()) out["message"] = d.message;
  if (d.pre_score) out["pre_score"] = *d.pre_score;
  return out;
}

}  // namespace orchard::router
