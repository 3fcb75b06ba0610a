#include "train/optimizer.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "base/error.h"

namespace orchard::train {
namespace {

void check_parameter(const Parameter& p) {
  if (p.name.empty()) fail("parameter: empty name");
  if (p.shape.empty() || p.shape.size() > 2) fail("parameter ", p.name, ": shape has ", p.shape.size(), " dimensions, need 1 or 2");
  int64_t n = 1;
  for (int64_t d : p.shape) {
    if (d < 1 || d > (int64_t{1} << 40)) fail("parameter ", p.name, ": dimension ", d, " out of range");
    n *= d;
  }
  if (static_cast<int64_t>(p.value.size()) != n) fail("parameter ", p.name, ": value has ", p.value.size(), " elements, shape needs ", n);
  if (static_cast<int64_t>(p.grad.size()) != n) fail("parameter ", p.name, ": gradient has ", p.grad.size(), " elements, shape needs ", n);
}

void check_finite_gradients(std::span<const Parameter> params) {
  for (const Parameter& p : params)
    for (size_t i = 0; i < p.grad.size(); ++i)
      if (!std::isfinite(p.grad[i])) fail("parameter ", p.name, ": gradient element ", i, " is ", p.grad[i], " (not finite)");
}

// Little-endian writing and bounds-checked reading of the saved state.
constexpr char kMagic[8] = {'O', 'R', 'C', 'H', 'A', 'D', 'A', 'M'};
constexpr uint32_t kVersion = 1;

void put_u64(std::vector<uint8_t>& out, uint64_t x) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void put_u32(std::vector<uint8_t>& out, uint32_t x) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void put_f64(std::vector<uint8_t>& out, double x) { put_u64(out, std::bit_cast<uint64_t>(x)); }
void put_floats(std::vector<uint8_t>& out, const std::vector<float>& xs) {
  for (float x : xs) put_u32(out, std::bit_cast<uint32_t>(x));
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  size_t left() const { return bytes_.size() - at_; }
  const uint8_t* take(size_t n, const char* what) {
    if (n > left()) fail("AdamW state: truncated at byte ", at_, " reading ", what, " (", n, " bytes, ", left(), " left)");
    const uint8_t* p = bytes_.data() + at_;
    at_ += n;
    return p;
  }
  uint64_t u64(const char* what) {
    const uint8_t* p = take(8, what);
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(p[i]) << (8 * i);
    return x;
  }
  uint32_t u32(const char* what) {
    const uint8_t* p = take(4, what);
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x |= static_cast<uint32_t>(p[i]) << (8 * i);
    return x;
  }
  double f64(const char* what) { return std::bit_cast<double>(u64(what)); }
  void floats(std::vector<float>& out, const char* what) {
    const uint8_t* p = take(out.size() * 4, what);
    for (size_t i = 0; i < out.size(); ++i) {
      uint32_t x = 0;
      for (int b = 0; b < 4; ++b) x |= static_cast<uint32_t>(p[4 * i + b]) << (8 * b);
      out[i] = std::bit_cast<float>(x);
    }
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

void check_config(const AdamWConfig& c) {
  if (!(c.lr >= 0) || !std::isfinite(c.lr)) fail("AdamW: lr ", c.lr, " must be finite and >= 0");
  if (!(c.beta1 >= 0 && c.beta1 < 1)) fail("AdamW: beta1 ", c.beta1, " must be in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) fail("AdamW: beta2 ", c.beta2, " must be in [0, 1)");
  if (!(c.eps > 0) || !std::isfinite(c.eps)) fail("AdamW: eps ", c.eps, " must be finite and > 0");
  if (!(c.weight_decay >= 0) || !std::isfinite(c.weight_decay))
    fail("AdamW: weight_decay ", c.weight_decay, " must be finite and >= 0");
}

}  // namespace

int64_t Parameter::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

AdamW::AdamW(const AdamWConfig& config, std::span<const Parameter> params) : config_(config) {
  check_config(config_);
  state_.reserve(params.size());
  for (const Parameter& p : params) {
    check_parameter(p);
    state_.push_back(State{p.name, std::vector<float>(p.value.size(), 0.0f), std::vector<float>(p.value.size(), 0.0f)});
  }
}

void AdamW::step(std::span<Parameter> params, double lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) fail("AdamW step: lr ", lr, " must be finite and >= 0");
  if (params.size() != state_.size())
    fail("AdamW step: ", params.size(), " parameters, the optimizer holds state for ", state_.size());
  for (size_t i = 0; i < params.size(); ++i) {
    check_parameter(params[i]);
    if (params[i].name != state_[i].name)
      fail("AdamW step: parameter ", i, " is ", params[i].name, ", the optimizer's state is for ", state_[i].name);
    if (params[i].value.size() != state_[i].m.size())
      fail("AdamW step: parameter ", params[i].name, " has ", params[i].value.size(), " elements, its state ", state_[i].m.size());
  }
  check_finite_gradients(params);  // all checks before any change: a refused step changes nothing

  const int64_t t = steps_ + 1;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bias2 = 1.0 - std::pow(b2, static_cast<double>(t));
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter& p = params[i];
    State& s = state_[i];
    const double decay = p.is_matrix() ? lr * config_.weight_decay : 0.0;
    for (size_t j = 0; j < p.value.size(); ++j) {
      const double g = p.grad[j];
      const double m = b1 * s.m[j] + (1.0 - b1) * g;
      const double v = b2 * s.v[j] + (1.0 - b2) * g * g;
      const double w = p.value[j];
      const double update = (m / bias1) / (std::sqrt(v / bias2) + config_.eps);
      s.m[j] = static_cast<float>(m);
      s.v[j] = static_cast<float>(v);
      p.value[j] = static_cast<float>(w - lr * update - decay * w);
    }
  }
  steps_ = t;
}

std::vector<uint8_t> AdamW::save() const {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  put_u32(out, kVersion);
  put_f64(out, config_.lr);
  put_f64(out, config_.beta1);
  put_f64(out, config_.beta2);
  put_f64(out, config_.eps);
  put_f64(out, config_.weight_decay);
  put_u64(out, static_cast<uint64_t>(steps_));
  put_u64(out, state_.size());
  for (const State& s : state_) {
    put_u32(out, static_cast<uint32_t>(s.name.size()));
    out.insert(out.end(), s.name.begin(), s.name.end());
    put_u64(out, s.m.size());
    put_floats(out, s.m);
    put_floats(out, s.v);
  }
  return out;
}

AdamW AdamW::restore(std::span<const uint8_t> bytes) {
  Reader in(bytes);
  if (std::memcmp(in.take(sizeof kMagic, "magic"), kMagic, sizeof kMagic) != 0) fail("AdamW state: bad magic (not an AdamW state)");
  const uint32_t version = in.u32("version");
  if (version != kVersion) fail("AdamW state: version ", version, ", this build reads ", kVersion);
  AdamW opt;
  opt.config_.lr = in.f64("lr");
  opt.config_.beta1 = in.f64("beta1");
  opt.config_.beta2 = in.f64("beta2");
  opt.config_.eps = in.f64("eps");
  opt.config_.weight_decay = in.f64("weight_decay");
  check_config(opt.config_);
  const uint64_t steps = in.u64("step count");
  if (steps > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail("AdamW state: step count ", steps, " out of range");
  opt.steps_ = static_cast<int64_t>(steps);
  const uint64_t count = in.u64("parameter count");
  // Each parameter takes at least 4 + 1 + 8 bytes: a count beyond that is a corrupt state.
  if (count > in.left() / 13) fail("AdamW state: parameter count ", count, " does not fit the ", in.left(), " bytes left");
  opt.state_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t name_len = in.u32("name length");
    if (name_len == 0 || name_len > 4096) fail("AdamW state: parameter ", i, ": name length ", name_len, " not in 1..4096");
    const uint8_t* name = in.take(name_len, "name");
    State s;
    s.name.assign(reinterpret_cast<const char*>(name), name_len);
    const uint64_t n = in.u64("element count");
    if (n == 0 || n > in.left() / 8) fail("AdamW state: parameter ", s.name, ": element count ", n, " does not fit the ", in.left(), " bytes left");
    s.m.resize(n);
    s.v.resize(n);
    in.floats(s.m, "exp_avg");
    in.floats(s.v, "exp_avg_sq");
    opt.state_.push_back(std::move(s));
  }
  if (in.left() != 0) fail("AdamW state: ", in.left(), " bytes after the last parameter");
  return opt;
}

double clip_grad_norm(std::span<Parameter> params, double max_norm) {
  if (!(max_norm > 0) || !std::isfinite(max_norm)) fail("gradient clipping: max_norm ", max_norm, " must be finite and > 0");
  for (const Parameter& p : params) check_parameter(p);
  check_finite_gradients(params);
  double sum = 0;
  for (const Parameter& p : params)
    for (float g : p.grad) sum += static_cast<double>(g) * g;
  const double norm = std::sqrt(sum);
  if (norm > max_norm) {
    const double scale = max_norm / norm;
    for (Parameter& p : params)
      for (float& g : p.grad) g = static_cast<float>(g * scale);
  }
  return norm;
}

void accumulate_gradients(std::span<Parameter> params, std::span<const std::span<const float>> micro) {
  if (micro.size() != params.size()) fail("gradient accumulation: ", micro.size(), " gradients for ", params.size(), " parameters");
  for (size_t i = 0; i < params.size(); ++i)
    if (micro[i].size() != params[i].grad.size())
      fail("gradient accumulation: parameter ", params[i].name, ": micro-batch gradient has ", micro[i].size(), " elements, need ",
           params[i].grad.size());
  for (size_t i = 0; i < params.size(); ++i)
    for (size_t j = 0; j < micro[i].size(); ++j) params[i].grad[j] += micro[i][j];
}

void average_gradients(std::span<Parameter> params, int64_t count) {
  if (count < 1) fail("gradient accumulation: micro-batch count ", count, " must be >= 1");
  const float divisor = static_cast<float>(count);
  for (Parameter& p : params)
    for (float& g : p.grad) g /= divisor;
}

}  // namespace orchard::train
