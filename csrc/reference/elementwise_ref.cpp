// elementwise_ref.cpp: the scalar specification of kernels/elementwise.cpp (double arithmetic).
#include <cmath>

#include "kernels.h"

namespace irf {
namespace ref {

// out(i0..i3) = a(i0..i3) (op) b(i0..i3), or f(a(i0..i3)); see EwOp in kernels.h.
void elementwise(const EwParams& p) {
  for (i64 i0 = 0; i0 < p.shape[0]; ++i0)
    for (i64 i1 = 0; i1 < p.shape[1]; ++i1)
      for (i64 i2 = 0; i2 < p.shape[2]; ++i2)
        for (i64 i3 = 0; i3 < p.shape[3]; ++i3) {
          const double a = p.a[i0 * p.as[0] + i1 * p.as[1] + i2 * p.as[2] + i3 * p.as[3]];
          double b = 0.0;
          if (ew_is_binary(p.op)) b = p.b[i0 * p.bs[0] + i1 * p.bs[1] + i2 * p.bs[2] + i3 * p.bs[3]];
          double r = 0.0;
          switch (p.op) {
            case kEwAdd: r = a + b; break;
            case kEwSub: r = a - b; break;
            case kEwMul: r = a * b; break;
            case kEwDiv: r = a / b; break;
            case kEwAffine: r = double(p.alpha) * a + double(p.beta); break;
            case kEwExp: r = std::exp(a); break;
            case kEwLog: r = std::log(a); break;
            case kEwSqrt: r = std::sqrt(a); break;
            case kEwPow: r = std::pow(a, double(p.alpha)); break;
            default: break;
          }
          p.out[i0 * p.os[0] + i1 * p.os[1] + i2 * p.os[2] + i3 * p.os[3]] = float(r);
        }
}

// out(o, i) = (accumulate ? out : 0) + sum_r x(o, r, i)
void reduce_sum(const ReduceParams& p) {
  for (i64 o = 0; o < p.O; ++o)
    for (i64 i = 0; i < p.I; ++i) {
      double s = 0.0;
      for (i64 r = 0; r < p.R; ++r) s += p.x[(o * p.R + r) * p.I + i];
      float* out = p.out + o * p.I + i;
      *out = p.accumulate ? float(double(*out) + s) : float(s);
    }
}

}  // namespace ref
}  // namespace irf
