// optim.cpp: fused optimizer steps and gradient-norm helpers over flat float32 buffers,
// compiled once per ISA.  Every buffer has n elements; all work is elementwise (or reduced in
// fixed blocks), so results do not depend on the thread count.
//
// The element formulas follow torch.optim's single-tensor CPU code operation by operation
// (same rounding points), with the scalar hyper-parameters prepared by the binding in double.
#include "kernels.h"
#include "simd.h"

// The update formulas round after each operation like PyTorch's; stop GCC from contracting a
// separate multiply and add (even between intrinsics) into one FMA here.  Explicit vfma calls
// (lerp, SGD's add with alpha) stay fused, as in ATen.
#pragma GCC optimize("fp-contract=off")

namespace irf {
namespace IRF_ISA {
namespace {

using AdamWScalars = KernelTable::AdamWScalars;
using SgdScalars = KernelTable::SgdScalars;

constexpr i64 kGrain = 16;                 // split work in whole cache lines
constexpr i64 kMinParallel = 1 << 15;      // elements below which one thread is faster

IRF_INLINE int team_for(i64 n, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  return n < kMinParallel ? 1 : nthreads;
}

// body(lo, hi) on each thread's whole-cache-line span of [0, n)
template <class F>
void parallel_spans(i64 n, int nthreads, F&& body) {
  run_team(team_for(n, nthreads), [&](int tid, int nth) {
    i64 lo, hi;
    split_range(ceil_div(n, kGrain), tid, nth, lo, hi);
    lo *= kGrain;
    hi = (hi * kGrain < n) ? hi * kGrain : n;
    body(lo, hi);
  });
}

// One AdamW element update on vectors (see AdamWScalars in kernels.h):
//   p = p * decay                          param.mul_(1 - lr * weight_decay)
//   m = m + (1 - beta1) * (g - m)          exp_avg.lerp_(grad, 1 - beta1)
//   v = v * beta2 + ((1 - beta2) * g) * g  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
//   d = sqrt(v) / bc2_sqrt + eps           denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
//   p = p + ((-step_size) * m) / d         param.addcdiv_(exp_avg, denom, value=-step_size)
IRF_INLINE void adamw_vec(vf& p, vf& m, vf& v, vf g, const AdamWScalars& s, bool decay) {
  if (decay) p = vmul(p, vset1(s.decay));
  m = vfma(vset1(s.one_minus_beta1), vsub(g, m), m);
  v = vadd(vmul(v, vset1(s.beta2)), vmul(vmul(vset1(s.one_minus_beta2), g), g));
  const vf d = vadd(vdiv(vsqrt(v), vset1(s.bc2_sqrt)), vset1(s.eps));
  p = vadd(p, vdiv(vmul(vset1(-s.step_size), m), d));
}

void adamw_range(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWScalars& s,
                 i64 lo, i64 hi) {
  const bool decay = s.apply_decay;
  i64 i = lo;
  for (; i + W <= hi; i += W) {
    vf p = vload(param + i), m = vload(exp_avg + i), v = vload(exp_avg_sq + i);
    adamw_vec(p, m, v, vload(grad + i), s, decay);
    vstore(param + i, p);
    vstore(exp_avg + i, m);
    vstore(exp_avg_sq + i, v);
  }
  if (i < hi) {
    const int r = int(hi - i);
    vf p = vload_part(param + i, r), m = vload_part(exp_avg + i, r), v = vload_part(exp_avg_sq + i, r);
    adamw_vec(p, m, v, vload_part(grad + i, r), s, decay);
    vstore_part(param + i, p, r);
    vstore_part(exp_avg + i, m, r);
    vstore_part(exp_avg_sq + i, v, r);
  }
}

// param, exp_avg, exp_avg_sq, grad: (n,)
void adamw_step(float* param, float* exp_avg, float* exp_avg_sq, const float* grad, const AdamWScalars& s,
                i64 n, int nthreads) {
  parallel_spans(n, nthreads, [&](i64 lo, i64 hi) { adamw_range(param, exp_avg, exp_avg_sq, grad, s, lo, hi); });
}

// One SGD element update (see SgdScalars in kernels.h):
//   g = g + wd * p                       grad = grad.add(param, alpha=weight_decay)
//   b = first ? g : b * mom + (1-damp) g buf = clone(grad) / buf.mul_(momentum).add_(grad, alpha=1-dampening)
//   g = nesterov ? g + mom * b : b       grad = grad.add(buf, alpha=momentum) / grad = buf
//   p = p - lr * g                       param.add_(grad, alpha=-lr)
IRF_INLINE vf sgd_vec(vf p, vf& b, vf g, const SgdScalars& s, bool use_momentum) {
  if (s.weight_decay != 0.f) g = vfma(p, vset1(s.weight_decay), g);
  if (use_momentum) {
    b = s.first_step ? g : vfma(g, vset1(s.one_minus_dampening), vmul(b, vset1(s.momentum)));
    g = s.nesterov ? vfma(b, vset1(s.momentum), g) : b;
  }
  return vfma(g, vset1(-s.lr), p);
}

// param, momentum_buf (null when momentum == 0), grad: (n,)
void sgd_step(float* param, float* momentum_buf, const float* grad, const SgdScalars& s, i64 n, int nthreads) {
  const bool use_momentum = s.momentum != 0.f && momentum_buf != nullptr;
  parallel_spans(n, nthreads, [&](i64 lo, i64 hi) {
    i64 i = lo;
    for (; i + W <= hi; i += W) {
      vf b = use_momentum ? vload(momentum_buf + i) : vzero();
      vstore(param + i, sgd_vec(vload(param + i), b, vload(grad + i), s, use_momentum));
      if (use_momentum) vstore(momentum_buf + i, b);
    }
    if (i < hi) {
      const int r = int(hi - i);
      vf b = use_momentum ? vload_part(momentum_buf + i, r) : vzero();
      vstore_part(param + i, sgd_vec(vload_part(param + i, r), b, vload_part(grad + i, r), s, use_momentum), r);
      if (use_momentum) vstore_part(momentum_buf + i, b, r);
    }
  });
}

// partials[b] = sum_{i in block b} x[i]^2: float32 sums of 4 squares per lane (tiny rounding),
// accumulated in double per block; the binding adds the partials in block order.
void sum_squares(double* partials, const float* x, i64 n, int nthreads) {
  constexpr i64 kBlock = KernelTable::kSumSquaresBlock;
  const i64 nblocks = ceil_div(n, kBlock);
  constexpr i64 kSub = 8 * W;   // floats per float32 sub-sum: 2 accumulators x 4 vectors
  run_team(team_for(n, nthreads), [&](int tid, int nth) {
    i64 b0, b1;
    split_range(nblocks, tid, nth, b0, b1);
    for (i64 b = b0; b < b1; ++b) {
      const i64 lo = b * kBlock, hi = (lo + kBlock < n) ? lo + kBlock : n;
      double acc = 0.0;
      i64 i = lo;
      for (; i + kSub <= hi; i += kSub) {
        vf s0 = vzero(), s1 = vzero();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const vf a = vload(x + i + 2 * k * W), c = vload(x + i + (2 * k + 1) * W);
          s0 = vfma(a, a, s0);
          s1 = vfma(c, c, s1);
        }
        acc += double(vreduce_add(vadd(s0, s1)));
      }
      for (; i < hi; ++i) acc += double(x[i]) * double(x[i]);
      partials[b] = acc;
    }
  });
}

// x *= factor
void scale(float* x, float factor, i64 n, int nthreads) {
  parallel_spans(n, nthreads, [&](i64 lo, i64 hi) {
    const vf f = vset1(factor);
    i64 i = lo;
    for (; i + W <= hi; i += W) vstore(x + i, vmul(vload(x + i), f));
    if (i < hi) vstore_part(x + i, vmul(vload_part(x + i, int(hi - i)), f), int(hi - i));
  });
}

}  // namespace

void register_optim(KernelTable& t) {
  t.adamw_step = &adamw_step;
  t.sgd_step = &sgd_step;
  t.sum_squares = &sum_squares;
  t.scale = &scale;
}

}  // namespace IRF_ISA
}  // namespace irf
