// The optimizer step against independent expectations: the PyTorch AdamW oracle of
// ../shared/train (float64 results rounded to float32, README "adamw"), two AdamW steps written
// out from the formula evaluated in Python's float64, clipping on gradients whose norm is known
// by hand, accumulation on micro-batches whose mean is exact, and resuming from saved state.
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "test_paths.h"

namespace orchard::train {
namespace {

// Distance in float32 ulps: the number of representable floats between a and b.
int64_t ulps(float a, float b) {
  auto ordered = [](float x) {
    const int32_t i = std::bit_cast<int32_t>(x);
    return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : static_cast<int64_t>(i);
  };
  return std::llabs(ordered(a) - ordered(b));
}

std::vector<float> read_floats(const std::string& path, uint64_t offset, uint64_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ADD_FAILURE() << "cannot open " << path;
  std::vector<float> out(count);
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!in) ADD_FAILURE() << path << ": cannot read " << count << " floats at byte " << offset;
  return out;
}

const nlohmann::json& find_case(const nlohmann::json& manifest, const std::string& name) {
  for (const auto& c : manifest.at("cases"))
    if (c.at("case") == name) return c;
  throw std::runtime_error("manifest has no case " + name);
}

const nlohmann::json& find_tensor(const nlohmann::json& c, const std::string& name) {
  for (const auto& t : c.at("tensors"))
    if (t.at("name") == name) return t;
  throw std::runtime_error("case " + c.at("case").get<std::string>() + " has no tensor " + name);
}

// Every adamw case of the manifest: the GGUF weights and the stored float32 sft gradient, one step
// with the README's hyperparameters, against `.updated`, `.exp_avg` and `.exp_avg_sq`. The oracle
// is float64 arithmetic rounded once to float32; so is each of the optimizer's three lines, from
// the same float32 inputs. They can then differ only where the float64 values lie within float64
// rounding of a float32 rounding boundary: at most 1 ulp on any element. Asserted: at most 1 ulp
// everywhere (measured: 0, all 689,952 values bitwise equal), and the README's bounds (weights
// max abs 1e-6, moments relative L2 1e-6).
TEST(TrainAdamWOracle, OneStepMatchesPyTorchOnTheGoldenModels) {
  std::ifstream mf(test::shared_path("train/manifest.json"));
  ASSERT_TRUE(mf) << "missing " << test::shared_path("train/manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(mf);
  int cases = 0;
  for (const auto& c : manifest.at("cases")) {
    if (c.at("kind") != "adamw") continue;
    ++cases;
    const std::string case_name = c.at("case");
    const std::string model = case_name.substr(0, case_name.size() - std::string(".adamw").size());
    SCOPED_TRACE(case_name);
    const auto& h = c.at("hyperparameters");
    const AdamWConfig config{.lr = h.at("lr"), .beta1 = h.at("beta1"), .beta2 = h.at("beta2"), .eps = h.at("eps"),
                             .weight_decay = h.at("weight_decay")};
    EXPECT_EQ(h.at("step"), 1);
    auto gguf = GgufFile::open(test::shared_path(c.at("model").get<std::string>()));
    const auto& sft = find_case(manifest, model + ".sft");
    const std::string grad_path = test::shared_path("train/" + sft.at("grad_file").get<std::string>());
    const std::string result_path = test::shared_path("train/" + c.at("result_file").get<std::string>());

    std::vector<std::vector<float>> values, grads;
    std::vector<Parameter> params;
    const auto& chosen = c.at("chosen_tensors");
    ASSERT_EQ(chosen.size(), 2u);
    for (const auto& name_json : chosen) {
      const std::string name = name_json;
      const GgufTensor* t = gguf->find_tensor(name);
      ASSERT_NE(t, nullptr) << name;
      ASSERT_EQ(t->type, DType::F32) << name;
      const auto n = static_cast<size_t>(t->element_count());
      values.emplace_back(n);
      std::memcpy(values.back().data(), t->data, n * sizeof(float));
      const auto& g = find_tensor(sft, name);
      ASSERT_EQ(g.at("n_elements").get<size_t>(), n) << name;
      grads.push_back(read_floats(grad_path, g.at("offset"), n));
      // The parameter's shape as the manifest gives it: [rows, cols] = [ne1, ne0], or [n].
      std::vector<int64_t> shape(t->shape.rbegin(), t->shape.rend());
      EXPECT_EQ(shape, find_tensor(c, name + ".updated").at("shape").get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(shape.size() == 2, find_tensor(c, name + ".updated").at("weight_decay_applied").get<bool>()) << name;
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const auto& t = find_tensor(c, chosen[i].get<std::string>() + ".updated");
      const std::string name = chosen[i];
      std::vector<int64_t> shape = t.at("shape");
      params.push_back(Parameter{name, shape, values[i], grads[i]});
    }
    const std::vector<std::vector<float>> before = values;

    AdamW opt(config, params);
    opt.step(params);
    EXPECT_EQ(opt.steps_taken(), 1);

    for (size_t i = 0; i < params.size(); ++i) {
      const std::string& name = params[i].name;
      const size_t n = params[i].value.size();
      struct Check {
        const char* suffix;
        std::span<const float> got;
      } checks[] = {{".updated", params[i].value}, {".exp_avg", opt.exp_avg(i)}, {".exp_avg_sq", opt.exp_avg_sq(i)}};
      for (const Check& check : checks) {
        const auto& t = find_tensor(c, name + check.suffix);
        ASSERT_EQ(t.at("n_elements").get<size_t>(), n);
        const std::vector<float> want = read_floats(result_path, t.at("offset"), n);
        int64_t max_ulps = 0, differing = 0;
        double max_abs = 0, diff2 = 0, ref2 = 0;
        for (size_t j = 0; j < n; ++j) {
          const int64_t u = ulps(check.got[j], want[j]);
          max_ulps = std::max(max_ulps, u);
          differing += u != 0;
          const double d = static_cast<double>(check.got[j]) - want[j];
          max_abs = std::max(max_abs, std::fabs(d));
          diff2 += d * d;
          ref2 += static_cast<double>(want[j]) * want[j];
        }
        const double rel_l2 = std::sqrt(diff2 / ref2);
        std::printf("  %s %s%s: max %lld ulp, %lld of %zu elements differ, max abs %.3g, rel L2 %.3g\n", case_name.c_str(),
                    name.c_str(), check.suffix, static_cast<long long>(max_ulps), static_cast<long long>(differing), n, max_abs,
                    rel_l2);
        EXPECT_LE(max_ulps, 1) << name << check.suffix;
        if (std::string(check.suffix) == ".updated") EXPECT_LE(max_abs, 1e-6) << name;
        else EXPECT_LE(rel_l2, 1e-6) << name << check.suffix;
      }
      // The step moved the weights (the oracle is not the input).
      double moved = 0;
      for (size_t j = 0; j < n; ++j) moved = std::max(moved, std::fabs(static_cast<double>(values[i][j]) - before[i][j]));
      EXPECT_GT(moved, 5e-4) << name;
    }
  }
  EXPECT_EQ(cases, 3);
}

// Parameters that own their storage, for the hand-checked cases.
struct Owned {
  std::vector<float> w, g;
};

Parameter param(const std::string& name, std::vector<int64_t> shape, Owned& o) { return Parameter{name, std::move(shape), o.w, o.g}; }

// Overwrites in place (the parameters' spans keep pointing at the same storage).
void set(std::vector<float>& dst, const std::vector<float>& src) {
  ASSERT_EQ(dst.size(), src.size());
  std::copy(src.begin(), src.end(), dst.begin());
}

void expect_close(std::span<const float> got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    // The implementation keeps m, v and w in float32 between steps; the expectation carries float64
    // through both steps. Two steps of float32 storage stay within a few float32 ulps.
    const double tol = 4 * std::ldexp(1.0, -24) * std::max(std::fabs(want[i]), 1e-30);
    EXPECT_NEAR(got[i], want[i], tol) << what << " [" << i << "]";
  }
}

// Two steps on a 2x3 matrix (decayed) and a 3-vector (not decayed), lr 0.01, betas 0.9/0.999,
// eps 1e-8, weight decay 0.1. The expected values are the header's formula evaluated in Python's
// float64 (a separate ten-line script, not this implementation).
TEST(TrainAdamWHand, TwoStepsOnAMatrixAndAVector) {
  Owned W{{0.5f, -1.25f, 2.0f, 0.75f, -0.5f, 1.5f}, std::vector<float>(6)};
  Owned b{{0.25f, -0.75f, 1.0f}, std::vector<float>(3)};
  std::vector<Parameter> params{param("w", {2, 3}, W), param("b", {3}, b)};
  AdamW opt({.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1}, params);

  set(W.g, std::vector<float>{0.5f, -0.25f, 1.0f, -2.0f, 0.125f, 0.0f});
  set(b.g, std::vector<float>{1.0f, -0.5f, 0.0625f});
  opt.step(params);
  expect_close(params[0].value, {0.4895000002, -1.2387500004, 1.9880000001, 0.75924999995, -0.5094999992000001, 1.4985}, "W1");
  expect_close(opt.exp_avg(0), {0.05, -0.025, 0.1, -0.2, 0.0125, 0.0}, "mW1");
  expect_close(opt.exp_avg_sq(0), {0.00025, 6.25e-05, 0.001, 0.004, 1.5625e-05, 0.0}, "vW1");
  expect_close(params[1].value, {0.2400000001, -0.7400000002, 0.9900000015999998}, "b1");
  expect_close(opt.exp_avg(1), {0.1, -0.05, 0.00625}, "mb1");
  expect_close(opt.exp_avg_sq(1), {0.001, 0.00025, 3.90625e-06}, "vb1");

  set(W.g, std::vector<float>{-0.5f, 0.75f, 0.25f, 1.5f, -0.375f, 0.5f});
  set(b.g, std::vector<float>{0.25f, 0.5f, -1.0f});
  opt.step(params);
  EXPECT_EQ(opt.steps_taken(), 2);
  expect_close(params[0].value,
               {0.4895368159787474, -1.2424531486441852, 1.9777060248771272, 0.7593840000190497, -0.5040486010446006, 1.4895601319747511},
               "W2");
  expect_close(opt.exp_avg(0), {-0.005, 0.0525, 0.115, -0.03, -0.02625, 0.05}, "mW2");
  expect_close(opt.exp_avg_sq(0), {0.00049975, 0.0006249375, 0.0010615, 0.006246, 0.000156234375, 0.00025}, "vW2");
  expect_close(params[1].value, {0.23169402487722726, -0.7405263159789474, 0.9970091300751228}, "b2");
  expect_close(opt.exp_avg(1), {0.115, 0.005, -0.094375}, "mb2");
  expect_close(opt.exp_avg_sq(1), {0.0010615, 0.00049975, 0.00100390234375}, "vb2");
}

// Same inputs, bitwise the same outputs; and stopping after 2 of 5 steps, saving, restoring into
// a fresh optimizer and going on gives bitwise the weights and moments of the uninterrupted run.
TEST(TrainAdamWState, SaveRestoreContinuesBitIdentically) {
  auto grads_at = [](int step, size_t n, float sign) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = sign * std::sin(0.37f * static_cast<float>(i + 1) + 1.3f * static_cast<float>(step));
    return g;
  };
  const AdamWConfig config{.lr = 3e-3, .beta1 = 0.85, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05};
  auto make = [] { return std::vector<Owned>{{std::vector<float>(12, 0.3f), std::vector<float>(12)}, {std::vector<float>(4, -0.2f), std::vector<float>(4)}}; };
  auto params_of = [](std::vector<Owned>& o) { return std::vector<Parameter>{param("m", {3, 4}, o[0]), param("n", {4}, o[1])}; };

  std::vector<Owned> a = make();
  std::vector<Parameter> pa = params_of(a);
  AdamW straight(config, pa);
  for (int s = 0; s < 5; ++s) {
    set(a[0].g, grads_at(s, 12, 1));
    set(a[1].g, grads_at(s, 4, -1));
    straight.step(pa, 1e-3 * (s + 1));
  }

  std::vector<Owned> b = make();
  std::vector<Parameter> pb = params_of(b);
  std::vector<uint8_t> saved;
  {
    AdamW first(config, pb);
    for (int s = 0; s < 2; ++s) {
      set(b[0].g, grads_at(s, 12, 1));
      set(b[1].g, grads_at(s, 4, -1));
      first.step(pb, 1e-3 * (s + 1));
    }
    saved = first.save();
  }
  AdamW resumed = AdamW::restore(saved);
  EXPECT_EQ(resumed.save(), saved);  // the round trip is exact
  EXPECT_EQ(resumed.steps_taken(), 2);
  EXPECT_EQ(resumed.config().beta2, 0.99);
  for (int s = 2; s < 5; ++s) {
    set(b[0].g, grads_at(s, 12, 1));
    set(b[1].g, grads_at(s, 4, -1));
    resumed.step(pb, 1e-3 * (s + 1));
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(std::memcmp(a[i].w.data(), b[i].w.data(), a[i].w.size() * 4), 0) << i;
    EXPECT_EQ(std::memcmp(straight.exp_avg(i).data(), resumed.exp_avg(i).data(), a[i].w.size() * 4), 0) << i;
    EXPECT_EQ(std::memcmp(straight.exp_avg_sq(i).data(), resumed.exp_avg_sq(i).data(), a[i].w.size() * 4), 0) << i;
  }
  EXPECT_EQ(straight.save(), resumed.save());
  EXPECT_NE(a[0].w[0], 0.3f);  // it did train
}

TEST(TrainAdamWState, RefusesCorruptState) {
  Owned o{{1, 2, 3}, {0, 0, 0}};
  std::vector<Parameter> p{param("x", {3}, o)};
  AdamW opt({}, p);
  const std::vector<uint8_t> good = opt.save();
  ASSERT_NO_THROW(AdamW::restore(good));
  EXPECT_THROW(AdamW::restore({}), Error);
  for (size_t cut : {size_t{1}, size_t{8}, size_t{20}, good.size() - 1}) {
    std::vector<uint8_t> t(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_THROW(AdamW::restore(t), Error) << cut;
  }
  std::vector<uint8_t> bad = good;
  bad[0] = 'X';
  EXPECT_THROW(AdamW::restore(bad), Error);
  bad = good;
  bad.push_back(0);
  EXPECT_THROW(AdamW::restore(bad), Error);  // trailing bytes
  bad = good;
  const size_t count_at = 8 + 4 + 5 * 8 + 8;
  for (int i = 0; i < 8; ++i) bad[count_at + i] = 0xff;  // parameter count 2^64-1
  EXPECT_THROW(AdamW::restore(bad), Error);
  bad = good;
  const size_t elements_at = count_at + 8 + 4 + 1;
  for (int i = 0; i < 8; ++i) bad[elements_at + i] = 0x7f;  // element count beyond the bytes
  EXPECT_THROW(AdamW::restore(bad), Error);
  bad = good;
  bad[8 + 4 + 8 + 7] = 0xbf;  // beta1 = -x: a config outside its range
  EXPECT_THROW(AdamW::restore(bad), Error);
}

TEST(TrainAdamWBadInput, RefusedWithTheNameAndNothingChanges) {
  Owned w{{1, 2, 3, 4}, {0.5f, 0.5f, 0.5f, 0.5f}};
  Owned n{{1, 1}, {0.25f, 0.25f}};
  std::vector<Parameter> params{param("blk.0.attn_q.weight", {2, 2}, w), param("blk.0.attn_norm.weight", {2}, n)};
  AdamW opt({.weight_decay = 0.1}, params);

  n.g[1] = NAN;
  try {
    opt.step(params);
    ADD_FAILURE() << "a NaN gradient was trained on";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_norm.weight"), std::string::npos) << e.what();
  }
  n.g[1] = INFINITY;
  EXPECT_THROW(opt.step(params), Error);
  // Nothing moved, not even the first parameter, which came before the bad one.
  EXPECT_EQ(w.w, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(n.w, (std::vector<float>{1, 1}));
  EXPECT_EQ(opt.steps_taken(), 0);
  EXPECT_EQ(opt.exp_avg(0)[0], 0.0f);
  n.g[1] = 0.25f;

  EXPECT_THROW(opt.step(params, -1e-3), Error);
  EXPECT_THROW(opt.step(params, NAN), Error);
  EXPECT_THROW(AdamW({.lr = -1}, params), Error);
  EXPECT_THROW(AdamW({.beta1 = 1.0}, params), Error);
  EXPECT_THROW(AdamW({.beta2 = -0.1}, params), Error);
  EXPECT_THROW(AdamW({.eps = 0}, params), Error);
  EXPECT_THROW(AdamW({.weight_decay = NAN}, params), Error);

  // Sizes: a gradient shorter than its value, a shape that does not match, another list.
  std::vector<float> short_grad(3);
  std::vector<Parameter> wrong = params;
  wrong[0].grad = short_grad;
  EXPECT_THROW(opt.step(wrong), Error);
  wrong = params;
  wrong[0].shape = {3, 2};
  EXPECT_THROW(opt.step(wrong), Error);
  EXPECT_THROW(opt.step(std::span<Parameter>(params).first(1)), Error);
  wrong = params;
  std::swap(wrong[0].name, wrong[1].name);
  EXPECT_THROW(opt.step(wrong), Error);
  EXPECT_THROW(AdamW({}, std::vector<Parameter>{Parameter{"x", {5}, w.w, w.g}}), Error);  // shape 5, spans 4

  opt.step(params);  // the good step still works after the refusals
  EXPECT_EQ(opt.steps_taken(), 1);
  EXPECT_LT(w.w[0], 1.0f);
}

// Gradients {3, 4} and {12}: global norm sqrt(9 + 16 + 144) = 13, by hand.
TEST(TrainClip, ScalesToTheBoundAboveItAndLeavesItBelow) {
  Owned a{{0, 0}, {3, 4}};
  Owned b{{0}, {12}};
  std::vector<Parameter> params{param("a", {2}, a), param("b", {1, 1}, b)};
  EXPECT_EQ(clip_grad_norm(params, 6.5), 13.0);
  EXPECT_EQ(a.g, (std::vector<float>{1.5f, 2.0f}));  // 6.5 / 13 = 0.5, exact
  EXPECT_EQ(b.g, (std::vector<float>{6.0f}));

  // At and below the bound the gradients are untouched, bit for bit.
  EXPECT_EQ(clip_grad_norm(params, 6.5), 6.5);
  EXPECT_EQ(a.g, (std::vector<float>{1.5f, 2.0f}));
  EXPECT_EQ(clip_grad_norm(params, 100), 6.5);
  EXPECT_EQ(b.g, (std::vector<float>{6.0f}));

  // An awkward bound: the norm after clipping is the bound up to float32 rounding.
  Owned c{std::vector<float>(7), {0.1f, -0.7f, 2.5f, 1e-3f, -3.25f, 0.0f, 9.0f}};
  std::vector<Parameter> one{param("c", {7}, c)};
  double want = 0;
  for (float g : c.g) want += static_cast<double>(g) * g;
  want = std::sqrt(want);
  EXPECT_NEAR(clip_grad_norm(one, 0.3), want, 1e-12 * want);
  double after = 0;
  for (float g : c.g) after += static_cast<double>(g) * g;
  EXPECT_NEAR(std::sqrt(after), 0.3, 0.3 * 1e-7);

  b.g[0] = NAN;
  try {
    clip_grad_norm(params, 1.0);
    ADD_FAILURE() << "a NaN gradient was clipped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter b"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a.g, (std::vector<float>{1.5f, 2.0f}));  // nothing was scaled
  b.g[0] = 1;
  EXPECT_THROW(clip_grad_norm(params, 0), Error);
  EXPECT_THROW(clip_grad_norm(params, -1), Error);
  EXPECT_THROW(clip_grad_norm(params, NAN), Error);
}

// Three micro-batches whose mean is exact in float32.
TEST(TrainAccumulate, MeanOfMicroBatches) {
  Owned w{std::vector<float>(4), std::vector<float>(4, 0.0f)};
  Owned n{std::vector<float>(2), std::vector<float>(2, 0.0f)};
  std::vector<Parameter> params{param("w", {2, 2}, w), param("n", {2}, n)};
  const std::vector<std::vector<float>> micro_w{{1, 2, 3, 4}, {4, 5, 6, 7}, {-2, 2, 0, 1}};
  const std::vector<std::vector<float>> micro_n{{0.5f, -1}, {1, -2}, {1.5f, 0}};
  for (size_t k = 0; k < 3; ++k) {
    const std::vector<std::span<const float>> micro{micro_w[k], micro_n[k]};
    accumulate_gradients(params, micro);
  }
  average_gradients(params, 3);
  EXPECT_EQ(w.g, (std::vector<float>{1, 3, 3, 4}));
  EXPECT_EQ(n.g, (std::vector<float>{1, -1}));

  // A count that does not divide evenly: each element is sum / count, correctly rounded.
  Owned x{std::vector<float>(1), {1.0f}};
  std::vector<Parameter> px{param("x", {1}, x)};
  average_gradients(px, 3);
  EXPECT_EQ(x.g[0], 1.0f / 3.0f);

  const std::vector<float> short_w{1, 2, 3};
  const std::vector<std::span<const float>> wrong{short_w, micro_n[0]};
  try {
    accumulate_gradients(params, wrong);
    ADD_FAILURE() << "a short micro-batch gradient was accumulated";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter w"), std::string::npos) << e.what();
  }
  EXPECT_EQ(w.g, (std::vector<float>{1, 3, 3, 4}));  // unchanged
  const std::vector<std::span<const float>> too_few{micro_w[0]};
  EXPECT_THROW(accumulate_gradients(params, too_few), Error);
  EXPECT_THROW(average_gradients(params, 0), Error);
}

}  // namespace
}  // namespace orchard::train
