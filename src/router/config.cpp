#include "router/config.h"

#include <cmath>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"

namespace orchard::router {

using nlohmann::json;

std::string_view privacy_class_name(PrivacyClass c) {
  return c == PrivacyClass::device_only ? "device-only" : "private-cloud-allowed";
}

std::string_view pii_action_name(PiiAction a) {
  switch (a) {
    case PiiAction::local: return "local";
    case PiiAction::redact: return "redact";
    case PiiAction::allow: return "allow";
  }
  return "?";
}

std::string_view router_mode_name(RouterMode m) {
  switch (m) {
    case RouterMode::off: return "off";
    case RouterMode::pre: return "pre";
    case RouterMode::cascade: return "cascade";
  }
  return "?";
}

std::string_view cascade_signal_name(CascadeSignal s) {
  switch (s) {
    case CascadeSignal::mean_logprob: return "mean_logprob";
    case CascadeSignal::min_margin: return "min_margin";
    case CascadeSignal::mean_entropy: return "mean_entropy";
  }
  return "?";
}

PrivacyClass parse_privacy_class(std::string_view name, std::string_view what) {
  if (name == "device-only") return PrivacyClass::device_only;
  if (name == "private-cloud-allowed") return PrivacyClass::private_cloud_allowed;
  // The value is the client's; quoted within bounds so that an error line stays one short line.
  fail(what, ": unknown privacy class '", name.substr(0, 64), "' (device-only or private-cloud-allowed)");
}

PiiAction RouterConfig::action_for(const PiiMatch& match) const {
  if (match.type != PiiType::custom) return pii[static_cast<size_t>(match.type)];
  for (const CustomPiiRule& rule : custom)
    if (rule.name == match.name) return rule.action;
  return PiiAction::local;  // a match of no known rule: the strictest action
}

namespace {

// Every key of an object must be one of `known`; `path` is the object's own path ("" for the root).
void check_keys(const json& object, std::string_view what, const std::string& path,
                std::initializer_list<std::string_view> known) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool ok = false;
    for (std::string_view k : known) ok = ok || it.key() == k;
    if (!ok) fail(what, ": unknown key ", path.empty() ? "" : path + ".", it.key().substr(0, 64));
  }
}

const json& expect_object(const json& v, std::string_view what, const std::string& path) {
  if (!v.is_object()) fail(what, ": ", path.empty() ? "the configuration" : path, " must be an object");
  return v;
}

bool get_bool(const json& v, std::string_view what, const std::string& path) {
  if (!v.is_boolean()) fail(what, ": ", path, " must be true or false");
  return v.get<bool>();
}

std::string get_string(const json& v, std::string_view what, const std::string& path) {
  if (!v.is_string()) fail(what, ": ", path, " must be a string");
  return v.get<std::string>();
}

int64_t get_int(const json& v, std::string_view what, const std::string& path, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    fail(what, ": ", path, " must be an integer");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) fail(what, ": ", path, " must be in [", lo, ", ", hi, "], got ", x);
  return x;
}

double get_number(const json& v, std::string_view what, const std::string& path) {
  if (!v.is_number()) fail(what, ": ", path, " must be a number");
  const double x = v.get<double>();
  if (!std::isfinite(x)) fail(what, ": ", path, " must be finite");
  return x;
}

PiiAction get_action(const json& v, std::string_view what, const std::string& path) {
  const std::string s = get_string(v, what, path);
  if (s == "local") return PiiAction::local;
  if (s == "redact") return PiiAction::redact;
  if (s == "allow") return PiiAction::allow;
  fail(what, ": ", path, " must be \"local\", \"redact\" or \"allow\", got \"", s.substr(0, 64), "\"");
}

}  // namespace

RouterConfig parse_router_config(std::string_view text, std::string_view what) {
  if (text.size() > kMaxRouterConfigBytes) fail(what, ": larger than ", kMaxRouterConfigBytes, " bytes");
  const json root = parse_json(text, what);
  expect_object(root, what, "");
  check_keys(root, what, "",
             {"default_class", "pii", "device", "cloud_models", "mode", "pre", "cascade", "cloud_deadline_ms",
              "cloud_failures_to_pause", "cloud_pause_s"});
  RouterConfig c;
  if (root.contains("default_class"))
    c.default_class = parse_privacy_class(get_string(root["default_class"], what, "default_class"),
                                          std::string(what) + ": default_class");
  if (root.contains("pii")) {
    const json& pii = expect_object(root["pii"], what, "pii");
    check_keys(pii, what, "pii", {"email", "phone", "card", "iban", "us_ssn", "ipv4", "ipv6", "custom"});
    for (size_t t = 0; t < kBuiltinPiiTypes; ++t) {
      const std::string name(pii_type_name(static_cast<PiiType>(t)));
      if (pii.contains(name)) c.pii[t] = get_action(pii[name], what, "pii." + name);
    }
    if (pii.contains("custom")) {
      const json& list = pii["custom"];
      if (!list.is_array()) fail(what, ": pii.custom must be an array");
      if (list.size() > kMaxCustomPatterns) fail(what, ": pii.custom has more than ", kMaxCustomPatterns, " patterns");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string path = "pii.custom[" + std::to_string(i) + "]";
        const json& rule = expect_object(list[i], what, path);
        check_keys(rule, what, path, {"name", "pattern", "action"});
        for (const char* key : {"name", "pattern", "action"})
          if (!rule.contains(key)) fail(what, ": ", path, ".", key, " is missing");
        CustomPiiRule r;
        r.name = get_string(rule["name"], what, path + ".name");
        if (r.name.empty() || r.name.size() > 64) fail(what, ": ", path, ".name must be 1 to 64 bytes");
        for (const CustomPiiRule& other : c.custom)
          if (other.name == r.name) fail(what, ": ", path, ".name '", r.name, "' is given twice");
        r.pattern = get_string(rule["pattern"], what, path + ".pattern");
        if (r.pattern.empty() || r.pattern.size() > 4096) fail(what, ": ", path, ".pattern must be 1 to 4096 bytes");
        r.action = get_action(rule["action"], what, path + ".action");
        c.custom.push_back(std::move(r));
      }
      // A pattern that does not compile is refused now, not at the first request.
      try {
        find_pii("x", pii_options(c));
      } catch (const Error& e) {
        fail(what, ": pii.custom: ", e.what());
      }
    }
  }
  if (root.contains("device")) {
    const json& d = expect_object(root["device"], what, "device");
    check_keys(d, what, "device", {"context", "tools", "json_schema"});
    if (d.contains("context")) c.device_context = get_int(d["context"], what, "device.context", 0, int64_t{1} << 24);
    if (d.contains("tools")) c.device_tools = get_bool(d["tools"], what, "device.tools");
    if (d.contains("json_schema")) c.device_json_schema = get_bool(d["json_schema"], what, "device.json_schema");
  }
  if (root.contains("cloud_models")) {
    const json& list = root["cloud_models"];
    if (!list.is_array()) fail(what, ": cloud_models must be an array of strings");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string name = get_string(list[i], what, "cloud_models[" + std::to_string(i) + "]");
      if (name.empty()) fail(what, ": cloud_models[", i, "] is empty");
      c.cloud_models.push_back(std::move(name));
    }
  }
  bool has_pre = false, has_cascade = false;
  if (root.contains("pre")) {
    const json& p = expect_object(root["pre"], what, "pre");
    check_keys(p, what, "pre", {"threshold", "features", "bias"});
    if (!p.contains("threshold")) fail(what, ": pre.threshold is missing");
    c.pre_threshold = get_number(p["threshold"], what, "pre.threshold");
    // A fitted model comes whole: weights without their bias (or the reverse) would shift every
    // score and route a different share than the calibration chose.
    if (p.contains("features") != p.contains("bias"))
      fail(what, ": ", p.contains("features") ? "pre.bias" : "pre.features", " is missing (a fitted pre model has both)");
    if (p.contains("features")) {
      const json& f = p["features"];
      if (!f.is_object() || f.empty()) fail(what, ": pre.features must be a non-empty object {feature: weight}");
      for (auto it = f.begin(); it != f.end(); ++it) {
        const std::string path = "pre.features." + it.key().substr(0, 64);
        if (!pre_feature(PreSignals{}, it.key())) {
          std::string known;
          for (const std::string& n : pre_feature_names()) known += (known.empty() ? "" : ", ") + n;
          fail(what, ": unknown feature ", path, " (known: ", known, ")");
        }
        c.pre_model.weights.emplace_back(it.key(), get_number(it.value(), what, path));
      }
      c.pre_model.bias = get_number(p["bias"], what, "pre.bias");
    }
    has_pre = true;
  }
  if (root.contains("cascade")) {
    const json& p = expect_object(root["cascade"], what, "cascade");
    check_keys(p, what, "cascade", {"threshold", "signal"});
    if (!p.contains("threshold")) fail(what, ": cascade.threshold is missing");
    c.cascade_threshold = get_number(p["threshold"], what, "cascade.threshold");
    if (p.contains("signal")) {
      const std::string s = get_string(p["signal"], what, "cascade.signal");
      if (s == "mean_logprob") c.cascade_signal = CascadeSignal::mean_logprob;
      else if (s == "min_margin") c.cascade_signal = CascadeSignal::min_margin;
      else if (s == "mean_entropy") c.cascade_signal = CascadeSignal::mean_entropy;
      else fail(what, ": cascade.signal must be mean_logprob, min_margin or mean_entropy, got \"", s.substr(0, 64), "\"");
    }
    has_cascade = true;
  }
  if (root.contains("mode")) {
    const std::string m = get_string(root["mode"], what, "mode");
    if (m == "off") c.mode = RouterMode::off;
    else if (m == "pre") c.mode = RouterMode::pre;
    else if (m == "cascade") c.mode = RouterMode::cascade;
    else fail(what, ": mode must be off, pre or cascade, got \"", m.substr(0, 64), "\"");
  }
  // A mode without its threshold would route on a made-up number.
  if (c.mode == RouterMode::pre && !has_pre) fail(what, ": mode pre needs pre.threshold");
  if (c.mode == RouterMode::cascade && !has_cascade) fail(what, ": mode cascade needs cascade.threshold");
  if (root.contains("cloud_deadline_ms"))
    c.cloud_deadline_ms = get_int(root["cloud_deadline_ms"], what, "cloud_deadline_ms", 1, 600000);
  if (root.contains("cloud_failures_to_pause"))
    c.cloud_failures_to_pause = get_int(root["cloud_failures_to_pause"], what, "cloud_failures_to_pause", 1, 1000);
  if (root.contains("cloud_pause_s")) c.cloud_pause_s = get_int(root["cloud_pause_s"], what, "cloud_pause_s", 0, 86400);
  return c;
}

RouterConfig load_router_config(const std::string& path) {
  return parse_router_config(read_text_file(path, kMaxRouterConfigBytes), path);
}

json to_json(const RouterConfig& c) {
  json pii = json::object();
  for (size_t t = 0; t < kBuiltinPiiTypes; ++t)
    pii[std::string(pii_type_name(static_cast<PiiType>(t)))] = pii_action_name(c.pii[t]);
  pii["custom"] = json::array();
  for (const CustomPiiRule& r : c.custom)
    pii["custom"].push_back({{"name", r.name}, {"pattern", r.pattern}, {"action", pii_action_name(r.action)}});
  json cloud_models = json::array();
  for (const std::string& m : c.cloud_models) cloud_models.push_back(m);
  json pre = {{"threshold", c.pre_threshold}};
  if (c.pre_model.fitted()) {
    json features = json::object();
    for (const auto& [name, weight] : c.pre_model.weights) features[name] = weight;
    pre["features"] = features;
    pre["bias"] = c.pre_model.bias;
  }
  return json{{"default_class", privacy_class_name(c.default_class)},
              {"pii", pii},
              {"device", {{"context", c.device_context}, {"tools", c.device_tools}, {"json_schema", c.device_json_schema}}},
              {"cloud_models", cloud_models},
              {"mode", router_mode_name(c.mode)},
              {"pre", pre},
              {"cascade", {{"threshold", c.cascade_threshold}, {"signal", cascade_signal_name(c.cascade_signal)}}},
              {"cloud_deadline_ms", c.cloud_deadline_ms},
              {"cloud_failures_to_pause", c.cloud_failures_to_pause},
              {"cloud_pause_s", c.cloud_pause_s}};
}

PiiOptions pii_options(const RouterConfig& config) {
  PiiOptions options;  // every built-in type by default
  for (const CustomPiiRule& r : config.custom) options.custom.push_back(CustomPattern{r.name, r.pattern});
  return options;
}

}  // namespace orchard::router
