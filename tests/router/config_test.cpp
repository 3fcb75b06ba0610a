// The router's configuration (src/router/config.h, issue 19): defaults, every field read, every
// refusal naming the key's path, and the JSON form read back equal.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "orchard/error.h"
#include "router/config.h"

namespace orchard::router {
namespace {

// The error of parsing `text`, or "" when it parses.
std::string error_of(const std::string& text) {
  try {
    parse_router_config(text, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RouterConfig, Defaults) {
  const RouterConfig c = parse_router_config("{}");
  EXPECT_EQ(c.default_class, PrivacyClass::device_only);
  auto action = [&](PiiType t) { return c.pii[static_cast<size_t>(t)]; };
  EXPECT_EQ(action(PiiType::card), PiiAction::local);
  EXPECT_EQ(action(PiiType::iban), PiiAction::local);
  EXPECT_EQ(action(PiiType::us_ssn), PiiAction::local);
  EXPECT_EQ(action(PiiType::email), PiiAction::redact);
  EXPECT_EQ(action(PiiType::phone), PiiAction::redact);
  EXPECT_EQ(action(PiiType::ipv4), PiiAction::allow);
  EXPECT_EQ(action(PiiType::ipv6), PiiAction::allow);
  EXPECT_EQ(c.device_context, 0);
  EXPECT_TRUE(c.device_tools);
  EXPECT_TRUE(c.device_json_schema);
  EXPECT_TRUE(c.cloud_models.empty());
  EXPECT_EQ(c.mode, RouterMode::off);
  EXPECT_EQ(c.cloud_deadline_ms, 2000);
  EXPECT_EQ(c.cloud_failures_to_pause, 3);
  EXPECT_EQ(c.cloud_pause_s, 30);
}

TEST(RouterConfig, EveryField) {
  const RouterConfig c = parse_router_config(R"({
    "default_class": "private-cloud-allowed",
    "pii": {"email": "allow", "phone": "local", "card": "redact", "iban": "redact", "us_ssn": "redact",
            "ipv4": "redact", "ipv6": "local",
            "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{6}", "action": "redact"}]},
    "device": {"context": 512, "tools": false, "json_schema": false},
    "cloud_models": ["big", "bigger"],
    "mode": "cascade",
    "pre": {"threshold": 3.5},
    "cascade": {"threshold": -1.25, "signal": "min_margin"},
    "cloud_deadline_ms": 1500, "cloud_failures_to_pause": 5, "cloud_pause_s": 0})");
  EXPECT_EQ(c.default_class, PrivacyClass::private_cloud_allowed);
  EXPECT_EQ(c.pii[static_cast<size_t>(PiiType::email)], PiiAction::allow);
  EXPECT_EQ(c.pii[static_cast<size_t>(PiiType::phone)], PiiAction::local);
  EXPECT_EQ(c.pii[static_cast<size_t>(PiiType::card)], PiiAction::redact);
  EXPECT_EQ(c.pii[static_cast<size_t>(PiiType::ipv4)], PiiAction::redact);
  EXPECT_EQ(c.pii[static_cast<size_t>(PiiType::ipv6)], PiiAction::local);
  ASSERT_EQ(c.custom.size(), 1u);
  EXPECT_EQ(c.custom[0].name, "ticket");
  EXPECT_EQ(c.custom[0].pattern, "TCK-[0-9]{6}");
  EXPECT_EQ(c.custom[0].action, PiiAction::redact);
  EXPECT_EQ(c.device_context, 512);
  EXPECT_FALSE(c.device_tools);
  EXPECT_FALSE(c.device_json_schema);
  EXPECT_EQ(c.cloud_models, (std::vector<std::string>{"big", "bigger"}));
  EXPECT_EQ(c.mode, RouterMode::cascade);
  EXPECT_DOUBLE_EQ(c.pre_threshold, 3.5);
  EXPECT_DOUBLE_EQ(c.cascade_threshold, -1.25);
  EXPECT_EQ(c.cascade_signal, CascadeSignal::min_margin);
  EXPECT_EQ(c.cloud_deadline_ms, 1500);
  EXPECT_EQ(c.cloud_failures_to_pause, 5);
  EXPECT_EQ(c.cloud_pause_s, 0);
  PiiMatch ticket{PiiType::custom, 0, 10, "ticket"};
  EXPECT_EQ(c.action_for(ticket), PiiAction::redact);

  // Written and read back: the same configuration.
  const RouterConfig back = parse_router_config(to_json(c).dump());
  EXPECT_EQ(to_json(back), to_json(c));
  EXPECT_EQ(back.custom[0].pattern, c.custom[0].pattern);
}

TEST(RouterConfig, EveryRefusalNamesTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"defualt_class": "device-only"})", "unknown key defualt_class"},
      {R"({"default_class": "public"})", "default_class"},
      {R"({"default_class": 1})", "default_class"},
      {R"({"pii": {"emial": "local"}})", "unknown key pii.emial"},
      {R"({"pii": {"card": "hide"}})", "pii.card"},
      {R"({"pii": {"phone": true}})", "pii.phone"},
      {R"({"pii": []})", "pii must be an object"},
      {R"({"pii": {"custom": {}}})", "pii.custom must be an array"},
      {R"({"pii": {"custom": [{"name": "x", "pattern": "a"}]}})", "pii.custom[0].action is missing"},
      {R"({"pii": {"custom": [{"name": "x", "pattern": "a", "action": "local", "flags": 1}]}})",
       "unknown key pii.custom[0].flags"},
      {R"({"pii": {"custom": [{"name": "x", "pattern": "(", "action": "local"}]}})", "pii.custom"},
      {R"({"pii": {"custom": [{"name": "x", "pattern": "a{6922337203685477580}", "action": "local"}]}})",
       "repetition count or back-reference"},
      {R"({"pii": {"custom": [{"name": "x", "pattern": "a", "action": "local"},
                              {"name": "x", "pattern": "b", "action": "local"}]}})", "pii.custom[1].name"},
      {R"({"device": {"context": -1}})", "device.context"},
      {R"({"device": {"context": 1.5}})", "device.context"},
      {R"({"device": {"tools": "yes"}})", "device.tools"},
      {R"({"device": {"json-schema": true}})", "unknown key device.json-schema"},
      {R"({"cloud_models": "big"})", "cloud_models"},
      {R"({"cloud_models": ["big", 3]})", "cloud_models[1]"},
      {R"({"mode": "always"})", "mode"},
      {R"({"mode": "pre"})", "pre.threshold"},
      {R"({"mode": "cascade"})", "cascade.threshold"},
      {R"({"pre": {}})", "pre.threshold is missing"},
      {R"({"pre": {"threshold": "3"}})", "pre.threshold"},
      {R"({"pre": {"threshold": 3, "window": 64}})", "unknown key pre.window"},
      {R"({"pre": {"threshold": 3, "features": {"mean_surprisal": 1}}})", "pre.bias is missing"},
      {R"({"pre": {"threshold": 3, "bias": 0.5}})", "pre.features is missing"},
      {R"({"pre": {"threshold": 3, "features": {}, "bias": 0}})", "pre.features must be a non-empty object"},
      {R"({"pre": {"threshold": 3, "features": [1], "bias": 0}})", "pre.features must be a non-empty object"},
      {R"({"pre": {"threshold": 3, "features": {"mean_suprisal": 1}, "bias": 0}})",
       "unknown feature pre.features.mean_suprisal"},
      {R"({"pre": {"threshold": 3, "features": {"next_entropy": "1"}, "bias": 0}})",
       "pre.features.next_entropy must be a number"},
      {R"({"pre": {"threshold": 3, "features": {"next_entropy": 1}, "bias": true}})", "pre.bias must be a number"},
      {R"({"cascade": {"threshold": 1, "signal": "perplexity"}})", "cascade.signal"},
      {R"({"cloud_deadline_ms": 0})", "cloud_deadline_ms"},
      {R"({"cloud_failures_to_pause": 0})", "cloud_failures_to_pause must be in [1, 1000]"},
      {R"({"cloud_pause_s": -1})", "cloud_pause_s"},
      {R"([])", "must be an object"},
      {R"({"mode": )", "cfg.json"},
  };
  for (const auto& [text, needle] : cases) {
    const std::string error = error_of(text);
    EXPECT_NE(error.find("cfg.json"), std::string::npos) << text << " -> " << error;
    EXPECT_NE(error.find(needle), std::string::npos) << text << " -> " << error;
  }
  // Nesting beyond the bound is refused before parsing.
  EXPECT_NE(error_of(std::string(10000, '[') + std::string(10000, ']')).find("cfg.json"), std::string::npos);
  EXPECT_NE(error_of(std::string(kMaxRouterConfigBytes + 1, ' ')).find("larger than"), std::string::npos);
}

// "pre" with a fitted model: the weights by name, the bias, read back equal from to_json; a
// configuration with only a threshold keeps the surprisal rule (no model) and writes no model.
TEST(RouterConfig, FittedPreModel) {
  const RouterConfig c = parse_router_config(R"({"mode": "pre",
    "pre": {"threshold": 0.75, "bias": -0.5,
            "features": {"mean_surprisal": 0.125, "entropy_last2": -2.5, "next_margin": 1e-3}}})");
  ASSERT_TRUE(c.pre_model.fitted());
  EXPECT_EQ(c.pre_threshold, 0.75);
  EXPECT_EQ(c.pre_model.bias, -0.5);
  ASSERT_EQ(c.pre_model.weights.size(), 3u);
  std::map<std::string, double> weights(c.pre_model.weights.begin(), c.pre_model.weights.end());
  EXPECT_EQ(weights, (std::map<std::string, double>{{"mean_surprisal", 0.125}, {"entropy_last2", -2.5},
                                                    {"next_margin", 1e-3}}));
  // Every feature name the signals define is accepted.
  nlohmann::json all = nlohmann::json::object();
  for (const std::string& name : pre_feature_names()) all[name] = 1.0;
  EXPECT_EQ(all.size(), 17u);
  const RouterConfig every = parse_router_config(nlohmann::json{{"pre", {{"threshold", 1}, {"features", all}, {"bias", 0}}}}.dump());
  EXPECT_EQ(every.pre_model.weights.size(), 17u);

  const nlohmann::json written = to_json(c);
  EXPECT_EQ(written["pre"]["features"]["entropy_last2"], -2.5);
  EXPECT_EQ(written["pre"]["bias"], -0.5);
  const RouterConfig back = parse_router_config(written.dump());
  EXPECT_EQ(back.pre_threshold, c.pre_threshold);
  EXPECT_EQ(back.pre_model.bias, c.pre_model.bias);
  EXPECT_EQ(back.pre_model.weights, c.pre_model.weights);

  const RouterConfig old = parse_router_config(R"({"mode": "pre", "pre": {"threshold": 5.6}})");
  EXPECT_FALSE(old.pre_model.fitted());
  const nlohmann::json old_written = to_json(old);
  EXPECT_FALSE(old_written["pre"].contains("features"));
  EXPECT_FALSE(old_written["pre"].contains("bias"));
  EXPECT_FALSE(parse_router_config(old_written.dump()).pre_model.fitted());
}

TEST(RouterConfig, PrivacyClassNames) {
  EXPECT_EQ(parse_privacy_class("device-only"), PrivacyClass::device_only);
  EXPECT_EQ(parse_privacy_class("private-cloud-allowed"), PrivacyClass::private_cloud_allowed);
  try {
    parse_privacy_class("Device-Only", "x-orchard-privacy-class");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x-orchard-privacy-class"), std::string::npos);
  }
}

}  // namespace
}  // namespace orchard::router
