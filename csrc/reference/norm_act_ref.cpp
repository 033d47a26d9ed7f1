// norm_act_ref.cpp: the scalar specification of the norm_act kernels (layernorm.cpp,
// activations.cpp, softmax.cpp, bias_add.cpp); double arithmetic, libm transcendentals.
#include <cmath>

#include "kernels.h"

namespace irf {
namespace ref {

// out = (x - mean) * rstd * weight + bias;  mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps)
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, i64 N, i64 C, float eps) {
  for (i64 i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    double m = 0.0, v = 0.0;
    for (i64 j = 0; j < C; ++j) m += xi[j];
    m /= double(C);
    for (i64 j = 0; j < C; ++j) v += (xi[j] - m) * (xi[j] - m);
    v /= double(C);
    const double rs = 1.0 / std::sqrt(v + double(eps));
    mean[i] = float(m);
    rstd[i] = float(rs);
    for (i64 j = 0; j < C; ++j) {
      double y = (xi[j] - m) * rs;
      if (weight) y *= weight[j];
      if (bias) y += bias[j];
      out[i * C + j] = float(y);
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight;
// dweight += sum_rows(dout * xhat), dbias += sum_rows(dout)
void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* weight, i64 N, i64 C) {
  for (i64 j = 0; j < C && dweight; ++j) {
    double sw = 0.0, sb = 0.0;
    for (i64 i = 0; i < N; ++i) {
      const double xh = (double(x[i * C + j]) - mean[i]) * rstd[i];
      sw += dout[i * C + j] * xh;
      sb += dout[i * C + j];
    }
    dweight[j] = float(dweight[j] + sw);
    if (dbias) dbias[j] = float(dbias[j] + sb);
  }
  for (i64 i = 0; i < N; ++i) {
    double a = 0.0, b = 0.0;
    for (i64 j = 0; j < C; ++j) {
      const double xh = (double(x[i * C + j]) - mean[i]) * rstd[i];
      const double g = double(dout[i * C + j]) * (weight ? weight[j] : 1.f);
      a += g;
      b += g * xh;
    }
    a /= double(C);
    b /= double(C);
    for (i64 j = 0; j < C; ++j) {
      const double xh = (double(x[i * C + j]) - mean[i]) * rstd[i];
      const double g = double(dout[i * C + j]) * (weight ? weight[j] : 1.f);
      dx[i * C + j] = float(rstd[i] * (g - a - xh * b));
    }
  }
}

namespace {
constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTanhK = 0.79788456080286535588;   // sqrt(2/pi)
constexpr double kTanhC = 0.044715;
}  // namespace

void act_forward(float* out, const float* x, i64 n, int act) {
  for (i64 i = 0; i < n; ++i) {
    const double v = x[i];
    double y;
    switch (act) {
      case kActGeluErf: y = 0.5 * v * (1.0 + std::erf(v * kSqrtHalf)); break;
      case kActGeluTanh: y = 0.5 * v * (1.0 + std::tanh(kTanhK * (v + kTanhC * v * v * v))); break;
      case kActRelu: y = v > 0.0 ? v : (v == v ? 0.0 : v); break;
      case kActSigmoid: y = 1.0 / (1.0 + std::exp(-v)); break;
      default: y = std::tanh(v); break;
    }
    out[i] = float(y);
  }
}

void act_backward(float* dx, const float* dout, const float* saved, i64 n, int act) {
  for (i64 i = 0; i < n; ++i) {
    const double s = saved[i], d = dout[i];
    double g;
    switch (act) {
      case kActGeluErf:
        g = 0.5 * (1.0 + std::erf(s * kSqrtHalf)) + s * std::exp(-0.5 * s * s) * kInvSqrt2Pi;
        break;
      case kActGeluTanh: {
        const double t = std::tanh(kTanhK * (s + kTanhC * s * s * s));
        g = 0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * kTanhK * (1.0 + 3.0 * kTanhC * s * s);
        break;
      }
      case kActRelu: g = s > 0.0 ? 1.0 : 0.0; break;
      case kActSigmoid: g = s * (1.0 - s); break;
      default: g = 1.0 - s * s; break;
    }
    dx[i] = float(d * g);
  }
}

void softmax_forward(float* out, const float* x, i64 N, i64 C, bool log) {
  for (i64 i = 0; i < N; ++i) {
    const float* xi = x + i * C;
    double m = -INFINITY, s = 0.0;
    for (i64 j = 0; j < C; ++j) m = xi[j] > m ? xi[j] : m;
    for (i64 j = 0; j < C; ++j) s += std::exp(xi[j] - m);
    for (i64 j = 0; j < C; ++j)
      out[i * C + j] = float(log ? xi[j] - m - std::log(s) : std::exp(xi[j] - m) / s);
  }
}

void softmax_backward(float* dx, const float* dout, const float* out, i64 N, i64 C, bool log) {
  for (i64 i = 0; i < N; ++i) {
    const float* di = dout + i * C;
    const float* yi = out + i * C;
    double s = 0.0;
    for (i64 j = 0; j < C; ++j) s += log ? double(di[j]) : double(di[j]) * yi[j];
    for (i64 j = 0; j < C; ++j)
      dx[i * C + j] = float(log ? di[j] - std::exp(double(yi[j])) * s : yi[j] * (di[j] - s));
  }
}

void add(float* out, const float* a, const float* b, i64 n) {
  for (i64 i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void add_bias(float* out, const float* x, const float* bias, i64 N, i64 C) {
  for (i64 i = 0; i < N; ++i)
    for (i64 j = 0; j < C; ++j) out[i * C + j] = x[i * C + j] + bias[j];
}

void sum_rows(float* out, const float* x, i64 N, i64 C, bool accumulate) {
  for (i64 j = 0; j < C; ++j) {
    double s = accumulate ? out[j] : 0.0;
    for (i64 i = 0; i < N; ++i) s += x[i * C + j];
    out[j] = float(s);
  }
}

}  // namespace ref
}  // namespace irf
