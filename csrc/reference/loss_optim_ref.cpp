// loss_optim_ref.cpp: the scalar specification of the loss_optim kernels (cross_entropy.cpp,
// embedding.cpp, optim.cpp, dropout.cpp).  Plain loops; double where it clarifies the math.
#include <cmath>

#include "kernels.h"

namespace irf {
namespace ref {

// lse[n] = log sum_j exp(x[n, j]) (two passes: max, then sum); row_loss[n] = lse[n] - x[n, t_n]
void cross_entropy_forward(float* lse, double* row_loss, const float* logits, const i64* targets, i64 N, i64 V,
                           i64 ignore_index) {
  for (i64 n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    double m = -INFINITY;
    for (i64 j = 0; j < V; ++j) m = std::fmax(m, double(x[j]));
    double s = 0.0;
    for (i64 j = 0; j < V; ++j) s += std::exp(double(x[j]) - m);
    const double l = std::isinf(m) ? m : m + std::log(s);
    lse[n] = float(l);
    row_loss[n] = targets[n] == ignore_index ? 0.0 : double(lse[n]) - double(x[targets[n]]);
  }
}

// dlogits[n, j] = scale * (exp(x[n, j] - lse[n]) - [j == t_n]); zero rows for ignored targets
void cross_entropy_backward(float* dlogits, const float* lse, const float* logits, const i64* targets,
                            float scale, i64 N, i64 V, i64 ignore_index) {
  for (i64 n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float* d = dlogits + n * V;
    const bool ignored = targets[n] == ignore_index;
    for (i64 j = 0; j < V; ++j) {
      const double p = std::exp(double(x[j]) - double(lse[n]));
      d[j] = ignored ? 0.f : float(double(scale) * (p - (j == targets[n] ? 1.0 : 0.0)));
    }
  }
}

// out[i, c] = weight[ids[i], c]
void embedding_forward(float* out, const i64* ids, const float* weight, i64 N, i64 C) {
  for (i64 i = 0; i < N; ++i)
    for (i64 c = 0; c < C; ++c) out[i * C + c] = weight[ids[i] * C + c];
}

// dweight[ids[i], c] += dout[i, c], i ascending
void embedding_backward(float* dweight, const float* dout, const i64* ids, i64 N, i64 C) {
  for (i64 i = 0; i < N; ++i)
    for (i64 c = 0; c < C; ++c) dweight[ids[i] * C + c] += dout[i * C + c];
}

// torch.optim.AdamW, one element at a time (float32 arithmetic, as torch does on float32)
void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWScalars& s, i64 n) {
  for (i64 i = 0; i < n; ++i) {
    float p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    const float g = grad[i];
    if (s.apply_decay) p = p * s.decay;
    m = m + s.one_minus_beta1 * (g - m);
    v = v * s.beta2 + (s.one_minus_beta2 * g) * g;
    const float d = std::sqrt(v) / s.bc2_sqrt + s.eps;
    p = p + (-s.step_size * m) / d;
    param[i] = p; exp_avg[i] = m; exp_avg_sq[i] = v;
  }
}

// torch.optim.SGD, one element at a time
void sgd_step(float* param, float* momentum_buf, const float* grad, const SgdScalars& s, i64 n) {
  const bool use_momentum = s.momentum != 0.f && momentum_buf != nullptr;
  for (i64 i = 0; i < n; ++i) {
    float g = grad[i];
    if (s.weight_decay != 0.f) g = g + s.weight_decay * param[i];
    if (use_momentum) {
      const float b = s.first_step ? g : momentum_buf[i] * s.momentum + s.one_minus_dampening * g;
      momentum_buf[i] = b;
      g = s.nesterov ? g + s.momentum * b : b;
    }
    param[i] = param[i] - s.lr * g;
  }
}

// partials[b] = sum over block b of x^2 in double
void sum_squares(double* partials, const float* x, i64 n) {
  for (i64 b = 0; b * kSumSquaresBlock < n; ++b) {
    double acc = 0.0;
    for (i64 i = b * kSumSquaresBlock; i < n && i < (b + 1) * kSumSquaresBlock; ++i) acc += double(x[i]) * double(x[i]);
    partials[b] = acc;
  }
}

void scale(float* x, float factor, i64 n) {
  for (i64 i = 0; i < n; ++i) x[i] *= factor;
}

// out[i] = keep(offset + i) ? x[i] * scale : 0
void dropout_forward(float* out, const float* x, const DropoutParams& d, i64 n) {
  for (i64 i = 0; i < n; ++i) {
    const std::uint64_t c = d.offset + std::uint64_t(i);
    std::uint32_t k1, k2;
    dropout_keys(d.seed, std::uint32_t(c >> 32), k1, k2);
    const bool keep = (dropout_hash(std::uint32_t(c), k1, k2) >> 8) >= d.p24;
    out[i] = keep ? x[i] * d.scale : 0.f;
  }
}

void dropout_backward(float* dx, const float* dout, const DropoutParams& d, i64 n) {
  dropout_forward(dx, dout, d, n);   // same mask, same scale
}

}  // namespace ref
}  // namespace irf
