// The router's decision (src/router/decision.h, issue 19) on hand-made requests: privacy before
// capability before confidence; a request pinned to the device is refused, never sent to the
// cloud; redaction of what leaves; the cascade's acceptance rule.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_test_support.h"
#include "orchard/error.h"
#include "router/decision.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard::router {
namespace {

using Reasons = std::vector<std::string>;

RouterConfig cloud_allowed_pre(double threshold) {
  RouterConfig c = parse_router_config(R"({"default_class": "private-cloud-allowed", "mode": "pre", "pre": {"threshold": 0}})");
  c.pre_threshold = threshold;
  return c;
}

RouteRequest request(std::vector<std::string> texts, int64_t prompt_tokens = 10) {
  RouteRequest r;
  r.texts = std::move(texts);
  r.prompt_tokens = prompt_tokens;
  r.device_context = 256;
  return r;
}

PreSignals surprisal(double mean) {
  PreSignals s;
  s.mean_surprisal = mean;
  s.max_surprisal = mean * 2;
  s.prompt_tokens = 10;
  s.scored_tokens = 9;
  return s;
}

TEST(RouterDecision, DeviceOnlyWithLongContextIsRefusedNeverCloud) {
  // Everything else would send it to the cloud: low confidence, a cloud model, tools unsupported.
  RouterConfig c = cloud_allowed_pre(1.0);
  c.cloud_models = {"big"};
  c.device_tools = false;
  RouteRequest r = request({"tell me a story"}, 300);  // 300 + 1 > 256
  r.privacy_class = "device-only";
  r.model = "big";
  r.tools = true;
  const PreSignals s = surprisal(9.0);
  const Decision d = decide(r, c, &s);
  EXPECT_EQ(d.route, Route::refuse);
  EXPECT_EQ(d.reasons, (Reasons{"privacy-device-only", "context-exceeds-device", "tools-unsupported",
                                "cloud-model-requested"}));
  EXPECT_EQ(d.message, "the request must stay on this device (privacy-device-only) and the device cannot answer it "
                       "(context-exceeds-device, tools-unsupported, cloud-model-requested)");
  EXPECT_TRUE(d.outgoing_texts.empty());  // nothing prepared to leave
  EXPECT_EQ(to_json(d)["route"], "refuse");

  // The same request that fits: answered on the device, whatever the confidence says.
  r.prompt_tokens = 200;
  r.max_tokens = 50;  // 250 <= 256
  r.model.clear();
  r.tools = false;
  const Decision fits = decide(r, c, &s);
  EXPECT_EQ(fits.route, Route::device);
  EXPECT_EQ(fits.reasons, (Reasons{"privacy-device-only"}));
  // max_tokens counts: 200 + 57 > 256.
  r.max_tokens = 57;
  EXPECT_EQ(decide(r, c, &s).route, Route::refuse);
  // The configuration's device context overrides the engine's.
  c.device_context = 1000;
  EXPECT_EQ(decide(r, c, &s).route, Route::device);
}

TEST(RouterDecision, DefaultClassApplies) {
  RouterConfig c = cloud_allowed_pre(1.0);
  c.default_class = PrivacyClass::device_only;
  const PreSignals s = surprisal(9.0);
  const Decision d = decide(request({"hello"}), c, &s);
  EXPECT_EQ(d.route, Route::device);
  EXPECT_EQ(d.privacy, PrivacyClass::device_only);
  EXPECT_EQ(d.reasons, (Reasons{"privacy-device-only"}));
  RouteRequest r = request({"hello"});
  r.privacy_class = "private-cloud-allowed";
  EXPECT_EQ(decide(r, c, &s).route, Route::cloud);
}

TEST(RouterDecision, UnknownClassIsAnError) {
  RouteRequest r = request({"hello"});
  r.privacy_class = "public";
  EXPECT_THROW(decide(r, RouterConfig{}, nullptr), Error);
}

TEST(RouterDecision, LocalPiiStaysOnTheDevice) {
  const RouterConfig c = cloud_allowed_pre(1.0);
  const PreSignals s = surprisal(9.0);  // would go to the cloud
  // "4111 1111 1111 1111": Visa, Luhn-valid (card: local by default); the e-mail: redact.
  const std::string text = "pay with 4111 1111 1111 1111 and mail bob@example.org";
  const Decision d = decide(request({"system prompt", text}), c, &s);
  EXPECT_EQ(d.route, Route::device);
  EXPECT_EQ(d.reasons, (Reasons{"pii-local:card"}));
  ASSERT_EQ(d.pii.size(), 2u);
  EXPECT_EQ(d.pii[0].match.type, PiiType::card);
  EXPECT_EQ(d.pii[0].text, 1u);
  EXPECT_EQ(d.pii[0].match.start, text.find("4111"));
  EXPECT_EQ(d.pii[0].match.end, text.find(" and"));
  EXPECT_EQ(d.pii[0].action, PiiAction::local);
  EXPECT_EQ(d.pii[1].match.type, PiiType::email);
  EXPECT_EQ(d.pii[1].action, PiiAction::redact);
  const nlohmann::json j = to_json(d);
  EXPECT_EQ(j["pii"][0]["type"], "card");
  EXPECT_EQ(j["pii"][0]["action"], "local");
  EXPECT_EQ(j["pii"][0]["start"], 9);
  EXPECT_EQ(j["pii"][0]["end"], 28);
  // The JSON holds no value of the text.
  EXPECT_EQ(j.dump().find("4111"), std::string::npos);
  EXPECT_EQ(j.dump().find("bob@"), std::string::npos);

  // Local PII with a request the device cannot answer: refused, not the cloud.
  RouteRequest long_one = request({text}, 1000);
  const Decision refused = decide(long_one, c, &s);
  EXPECT_EQ(refused.route, Route::refuse);
  EXPECT_EQ(refused.reasons, (Reasons{"pii-local:card", "context-exceeds-device"}));
}

TEST(RouterDecision, RedactedPiiGoesToTheCloudAsPlaceholders) {
  const RouterConfig c = cloud_allowed_pre(2.0);
  const PreSignals low = surprisal(2.5);
  const Decision d =
      decide(request({"write to bob@example.org", "cc bob@example.org and eve@example.net"}), c, &low);
  EXPECT_EQ(d.route, Route::cloud);
  EXPECT_EQ(d.reasons, (Reasons{"low-confidence-pre"}));
  ASSERT_EQ(d.outgoing_texts.size(), 2u);
  EXPECT_EQ(d.outgoing_texts[0], "write to [EMAIL_1]");
  // One value, one placeholder across the texts; the next value numbered after it.
  EXPECT_EQ(d.outgoing_texts[1], "cc [EMAIL_1] and [EMAIL_2]");
  EXPECT_EQ(restore("Sent to [EMAIL_1], copy to [EMAIL_2].", d.redaction),
            "Sent to bob@example.org, copy to eve@example.net.");
  EXPECT_EQ(to_json(d)["redacted"], 2);
  EXPECT_DOUBLE_EQ(to_json(d)["signals"]["mean_surprisal"].get<double>(), 2.5);

  // At or below the threshold: the device.
  const PreSignals sure = surprisal(2.0);
  const Decision dev = decide(request({"write to bob@example.org"}), c, &sure);
  EXPECT_EQ(dev.route, Route::device);
  EXPECT_EQ(dev.reasons, (Reasons{"confident-pre"}));
  // Allowed PII (an IPv4 address) leaves as it is.
  const Decision ip = decide(request({"ping 192.168.1.20"}), c, &low);
  EXPECT_EQ(ip.route, Route::cloud);
  ASSERT_EQ(ip.pii.size(), 1u);
  EXPECT_EQ(ip.pii[0].action, PiiAction::allow);
  EXPECT_EQ(ip.outgoing_texts[0], "ping 192.168.1.20");
  // pre mode without signals is the caller's error.
  EXPECT_THROW(decide(request({"x"}), c, nullptr), Error);
}

TEST(RouterDecision, CapabilityRules) {
  RouterConfig c = cloud_allowed_pre(100.0);  // confidence alone would keep everything local
  c.device_tools = false;
  c.device_json_schema = false;
  c.cloud_models = {"qwen-72b"};
  const PreSignals s = surprisal(1.0);
  RouteRequest r = request({"hi"});
  EXPECT_EQ(decide(r, c, &s).reasons, (Reasons{"confident-pre"}));
  r.tools = true;
  EXPECT_EQ(decide(r, c, &s).route, Route::cloud);
  EXPECT_EQ(decide(r, c, &s).reasons, (Reasons{"tools-unsupported"}));
  r.tools = false;
  r.json_schema = true;
  EXPECT_EQ(decide(r, c, &s).reasons, (Reasons{"json-schema-unsupported"}));
  r.json_schema = false;
  r.model = "qwen-72b";
  EXPECT_EQ(decide(r, c, &s).reasons, (Reasons{"cloud-model-requested"}));
  r.model = "local";
  r.prompt_tokens = 256;  // 256 + 1 > 256
  EXPECT_EQ(decide(r, c, &s).reasons, (Reasons{"context-exceeds-device"}));
  // Capability needs no signals, even in pre mode.
  EXPECT_EQ(decide(r, c, nullptr).route, Route::cloud);
  // With the device able to: back to the device.
  c.device_tools = true;
  r.prompt_tokens = 10;
  r.tools = true;
  EXPECT_EQ(decide(r, c, &s).route, Route::device);
}

// The cloud gets a "model" only when the request names one of cloud_models: the device's own
// model name, or an adapter's (which may name its user), stays on the device.
TEST(RouterDecision, OnlyACloudModelsNameLeaves) {
  RouterConfig c = cloud_allowed_pre(100.0);
  c.device_tools = false;
  c.cloud_models = {"qwen-72b"};
  const PreSignals s = surprisal(1.0);
  RouteRequest r = request({"hi"});
  r.model = "qwen-72b";
  Decision d = decide(r, c, &s);
  ASSERT_EQ(d.route, Route::cloud);
  EXPECT_EQ(d.outgoing_model, std::optional<std::string>("qwen-72b"));
  for (const std::string local : {"tiny:alice-style", "tiny", ""}) {
    r.model = local;
    r.tools = true;  // to the cloud for another reason
    d = decide(r, c, &s);
    ASSERT_EQ(d.route, Route::cloud) << local;
    EXPECT_EQ(d.outgoing_model, std::nullopt) << local;
  }
  // Cascade: prepared to leave, without the device's model name.
  c = parse_router_config(R"({"default_class": "private-cloud-allowed", "mode": "cascade", "cascade": {"threshold": -1.5}})");
  r = request({"hi"});
  r.model = "tiny:alice-style";
  d = decide(r, c, nullptr);
  ASSERT_TRUE(d.cascade_pending);
  EXPECT_EQ(d.outgoing_model, std::nullopt);
}

TEST(RouterDecision, ModeOffAndCascade) {
  RouterConfig c = parse_router_config(R"({"default_class": "private-cloud-allowed"})");
  Decision d = decide(request({"mail bob@example.org"}), c, nullptr);
  EXPECT_EQ(d.route, Route::device);
  EXPECT_EQ(d.reasons, (Reasons{"default-device"}));
  c = parse_router_config(
      R"({"default_class": "private-cloud-allowed", "mode": "cascade", "cascade": {"threshold": -1.5}})");
  d = decide(request({"mail bob@example.org"}), c, nullptr);
  EXPECT_EQ(d.route, Route::device);
  EXPECT_TRUE(d.cascade_pending);
  EXPECT_EQ(d.reasons, (Reasons{"cascade-pending"}));
  // Prepared for escalation: redacted already.
  ASSERT_EQ(d.outgoing_texts.size(), 1u);
  EXPECT_EQ(d.outgoing_texts[0], "mail [EMAIL_1]");
  // Device-only never cascades.
  RouteRequest pinned = request({"hi"});
  pinned.privacy_class = "device-only";
  EXPECT_FALSE(decide(pinned, c, nullptr).cascade_pending);
}

// pre with a fitted model: the score is minus the predicted confidence, bias + sum of weight *
// feature, computed here by hand; the cloud above the threshold, the device at or below it.
TEST(RouterDecision, FittedPreModel) {
  RouterConfig c = parse_router_config(R"({"default_class": "private-cloud-allowed", "mode": "pre",
      "pre": {"threshold": 0.5, "bias": -1.0,
              "features": {"mean_surprisal": 0.25, "next_entropy": -0.5, "surprisal_last1": 0.125}}})");
  PreSignals s = surprisal(3.0);  // mean 3: far above 0.5, which the old rule would send away
  s.next_entropy = 0.5;
  s.surprisal_last[0] = 2.0;
  // Predicted confidence -1 + 0.75 - 0.25 + 0.25 = -0.25: score 0.25, at or below 0.5: the device.
  Decision d = decide(request({"hi"}), c, &s);
  EXPECT_EQ(d.route, Route::device);
  EXPECT_EQ(d.reasons, (Reasons{"confident-pre"}));
  ASSERT_TRUE(d.pre_score.has_value());
  EXPECT_NEAR(*d.pre_score, 0.25, 1e-12);
  EXPECT_NEAR(to_json(d)["pre_score"].get<double>(), 0.25, 1e-12);
  // A higher next-token entropy lowers the predicted confidence: -1 + 0.75 - 1.25 + 0.25 = -1.25.
  s.next_entropy = 2.5;
  d = decide(request({"hi"}), c, &s);
  EXPECT_EQ(d.route, Route::cloud);
  EXPECT_EQ(d.reasons, (Reasons{"low-confidence-pre"}));
  EXPECT_NEAR(*d.pre_score, 1.25, 1e-12);
  // At the threshold exactly (score 0.5: next_entropy 1.0): the device.
  s.next_entropy = 1.0;
  d = decide(request({"hi"}), c, &s);
  EXPECT_NEAR(*d.pre_score, 0.5, 1e-12);
  EXPECT_EQ(d.route, Route::device);
  // Without a model the score is the mean surprisal, as before.
  c.pre_model = PreModel{};
  d = decide(request({"hi"}), c, &s);
  EXPECT_EQ(d.route, Route::cloud);
  EXPECT_EQ(*d.pre_score, 3.0);
  // No pre score outside pre mode's confidence step.
  RouteRequest pinned = request({"hi"});
  pinned.privacy_class = "device-only";
  EXPECT_FALSE(decide(pinned, c, &s).pre_score.has_value());
  EXPECT_FALSE(to_json(decide(pinned, c, &s)).contains("pre_score"));
}

TEST(RouterDecision, CascadeAcceptance) {
  RouterConfig c;
  c.cascade_threshold = -1.5;
  AnswerSignals a;
  a.tokens = 12;
  a.mean_logprob = -1.4;
  EXPECT_TRUE(accept_local_answer(a, c));
  a.mean_logprob = -1.5;
  EXPECT_TRUE(accept_local_answer(a, c));  // at the threshold: accepted
  a.mean_logprob = -1.6;
  EXPECT_FALSE(accept_local_answer(a, c));
  c.cascade_signal = CascadeSignal::min_margin;
  c.cascade_threshold = 0.5;
  a.min_margin = 0.4;
  EXPECT_FALSE(accept_local_answer(a, c));
  a.min_margin = 0.7;
  EXPECT_TRUE(accept_local_answer(a, c));
  c.cascade_signal = CascadeSignal::mean_entropy;
  c.cascade_threshold = 1.0;
  a.mean_entropy = 1.2;  // less sure than allowed
  EXPECT_FALSE(accept_local_answer(a, c));
  a.mean_entropy = 0.3;
  EXPECT_TRUE(accept_local_answer(a, c));
  EXPECT_TRUE(accept_local_answer(AnswerSignals{}, c));  // empty answer
}

// `orchard router explain` end to end on stories260K: the decision's JSON, and one-line errors.
TEST(RouterExplainCli, DecisionJson) {
  const std::string model = test::shared_path("models/stories260K/stories260K.gguf");
  const std::string prompt = "Once upon a time Lily wrote to lily@example.com from 4111-1111-1111-1111.";
  test::CliResult r = test::run_cli({"router", "explain", "--model", model, "--prompt", prompt});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["route"], "device");
  EXPECT_EQ(j["privacy_class"], "device-only");  // the default class
  EXPECT_EQ(j["reasons"], nlohmann::json({"privacy-device-only", "pii-local:card"}));
  ASSERT_EQ(j["pii"].size(), 2u);
  EXPECT_EQ(j["pii"][0]["type"], "email");
  EXPECT_EQ(j["pii"][0]["start"], prompt.find("lily@"));
  EXPECT_EQ(j["pii"][0]["end"], prompt.find(" from"));
  EXPECT_EQ(j["pii"][0]["action"], "redact");
  EXPECT_EQ(j["pii"][1]["type"], "card");
  EXPECT_EQ(j["pii"][1]["end"], prompt.size() - 1);
  EXPECT_GT(j["signals"]["mean_surprisal"].get<double>(), 0.0);
  EXPECT_EQ(j["signals"]["scored_tokens"].get<int64_t>(),
            std::min<int64_t>(kPreWindow, j["signals"]["prompt_tokens"].get<int64_t>() - 1));
  EXPECT_EQ(r.out.find("lily@example.com"), std::string::npos);

  // Cloud allowed, pre mode with a threshold below any surprisal: the cloud, redacted.
  test::TempDir dir;
  const std::string config =
      dir.write("router.json", R"({"default_class": "private-cloud-allowed", "mode": "pre", "pre": {"threshold": 0},
                                   "pii": {"card": "redact"}, "cloud_models": ["big"]})");
  r = test::run_cli({"router", "explain", "--model", model, "--prompt", prompt, "--config", config});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["route"], "cloud");
  EXPECT_EQ(j["reasons"], nlohmann::json({"low-confidence-pre"}));
  EXPECT_EQ(j["redacted"], 2);
  r = test::run_cli({"router", "explain", "--model", model, "--prompt", "hi", "--config", config, "--model-name", "big"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["reasons"], nlohmann::json({"cloud-model-requested"}));
  // --class device-only overrides the default: back on the device.
  r = test::run_cli({"router", "explain", "--model", model, "--prompt", "hi", "--config", config, "--class", "device-only"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["route"], "device");

  test::expect_one_line_error(
      test::run_cli({"router", "explain", "--model", model, "--prompt", "hi", "--class", "public"}), "--class");
  const std::string bad = dir.write("bad.json", R"({"pii": {"credit_card": "local"}})");
  test::expect_one_line_error(test::run_cli({"router", "explain", "--model", model, "--prompt", "hi", "--config", bad}),
                              "pii.credit_card");
}

}  // namespace
}  // namespace orchard::router
