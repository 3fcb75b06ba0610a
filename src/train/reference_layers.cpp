// The scalar reference layers: plain loops in double (see reference_layers.h).
#include "train/reference_layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace orchard::train {

void matmul_forward(double* out, const double* inp, const double* W, const double* b, int64_t T, int64_t I,
                    int64_t O) {
  for (int64_t t = 0; t < T; ++t) {
    const double* x = inp + t * I;
    for (int64_t o = 0; o < O; ++o) {
      const double* w = W + o * I;
      double sum = b ? b[o] : 0.0;
      for (int64_t i = 0; i < I; ++i) sum += w[i] * x[i];
      out[t * O + o] = sum;
    }
  }
}

void matmul_backward(double* dinp, double* dW, double* db, const double* dout, const double* inp, const double* W,
                     int64_t T, int64_t I, int64_t O) {
  for (int64_t t = 0; t < T; ++t) {
    const double* x = inp + t * I;
    const double* dy = dout + t * O;
    for (int64_t o = 0; o < O; ++o) {
      const double g = dy[o];
      if (db) db[o] += g;
      if (dinp) {
        const double* w = W + o * I;
        double* dx = dinp + t * I;
        for (int64_t i = 0; i < I; ++i) dx[i] += g * w[i];
      }
      if (dW) {
        double* dw = dW + o * I;
        for (int64_t i = 0; i < I; ++i) dw[i] += g * x[i];
      }
    }
  }
}

void rmsnorm_forward(double* out, const double* x, const double* w, int64_t n, double eps) {
  double sum_squares = 0;
  for (int64_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const double r = 1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w, int64_t n,
                      double eps) {
  double sum_squares = 0, dot = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum_squares += x[i] * x[i];
    dot += dout[i] * w[i] * x[i];
  }
  const double r = 1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps);
  const double c = r * r * r * dot / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    if (dw) dw[i] += dout[i] * x[i] * r;
    dx[i] += r * dout[i] * w[i] - x[i] * c;
  }
}

namespace {

// The two indices of pair i.
inline void pair_of(int64_t i, int64_t rope_dims, RopeStyle style, int64_t* a, int64_t* b) {
  if (style == RopeStyle::neox) {
    *a = i;
    *b = i + rope_dims / 2;
  } else {
    *a = 2 * i;
    *b = 2 * i + 1;
  }
}

}  // namespace

void rope_forward(double* head, int64_t rope_dims, RopeStyle style, const double* cos, const double* sin) {
  for (int64_t i = 0; i < rope_dims / 2; ++i) {
    int64_t ia, ib;
    pair_of(i, rope_dims, style, &ia, &ib);
    const double a = head[ia], b = head[ib];
    head[ia] = a * cos[i] - b * sin[i];
    head[ib] = a * sin[i] + b * cos[i];
  }
}

void rope_backward(double* dhead, int64_t rope_dims, RopeStyle style, const double* cos, const double* sin) {
  for (int64_t i = 0; i < rope_dims / 2; ++i) {
    int64_t ia, ib;
    pair_of(i, rope_dims, style, &ia, &ib);
    const double da = dhead[ia], db = dhead[ib];
    dhead[ia] = da * cos[i] + db * sin[i];
    dhead[ib] = -da * sin[i] + db * cos[i];
  }
}

void attention_forward(double* out, double* probs, const double* q, const double* k, const double* v, int64_t T,
                       int64_t H, int64_t KV, int64_t hd, double scale) {
  const int64_t group = H / KV, q_dim = H * hd, kv_dim = KV * hd;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t kh = h / group;
    for (int64_t t = 0; t < T; ++t) {
      const double* qt = q + t * q_dim + h * hd;
      double* p = probs + (h * T + t) * T;
      double max_score = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) {
        const double* kj = k + j * kv_dim + kh * hd;
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += qt[d] * kj[d];
        p[j] = dot * scale;
        max_score = std::max(max_score, p[j]);
      }
      double total = 0;
      for (int64_t j = 0; j <= t; ++j) total += p[j] = std::exp(p[j] - max_score);
      for (int64_t j = 0; j <= t; ++j) p[j] /= total;
      for (int64_t j = t + 1; j < T; ++j) p[j] = 0;
      double* o = out + t * q_dim + h * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = 0;
      for (int64_t j = 0; j <= t; ++j) {
        const double* vj = v + j * kv_dim + kh * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] += p[j] * vj[d];
      }
    }
  }
}

void attention_backward(double* dq, double* dk, double* dv, const double* dout, const double* probs, const double* q,
                        const double* k, const double* v, int64_t T, int64_t H, int64_t KV, int64_t hd, double scale) {
  const int64_t group = H / KV, q_dim = H * hd, kv_dim = KV * hd;
  std::vector<double> dp(static_cast<size_t>(T));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t kh = h / group;
    for (int64_t t = 0; t < T; ++t) {
      const double* p = probs + (h * T + t) * T;
      const double* dot = dout + t * q_dim + h * hd;
      double weighted = 0;
      for (int64_t j = 0; j <= t; ++j) {
        const double* vj = v + j * kv_dim + kh * hd;
        double* dvj = dv + j * kv_dim + kh * hd;
        double s = 0;
        for (int64_t d = 0; d < hd; ++d) {
          s += dot[d] * vj[d];
          dvj[d] += p[j] * dot[d];
        }
        dp[j] = s;
        weighted += p[j] * s;
      }
      const double* qt = q + t * q_dim + h * hd;
      double* dqt = dq + t * q_dim + h * hd;
      for (int64_t j = 0; j <= t; ++j) {
        const double ds = p[j] * (dp[j] - weighted) * scale;
        const double* kj = k + j * kv_dim + kh * hd;
        double* dkj = dk + j * kv_dim + kh * hd;
        for (int64_t d = 0; d < hd; ++d) {
          dqt[d] += ds * kj[d];
          dkj[d] += ds * qt[d];
        }
      }
    }
  }
}

void swiglu_forward(double* out, const double* gate, const double* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
}

void swiglu_backward(double* dgate, double* dup, const double* dout, const double* gate, const double* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], s = 1.0 / (1.0 + std::exp(-g));
    dgate[i] += dout[i] * up[i] * s * (1.0 + g * (1.0 - s));
    dup[i] += dout[i] * g * s;
  }
}

}  // namespace orchard::train
