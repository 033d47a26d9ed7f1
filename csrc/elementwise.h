// elementwise.h: parameter blocks of the elementwise kernels (csrc/kernels/elementwise.cpp),
// included by that kernel, its scalar twin and its binding (kernels.h only names them).
#pragma once
#include "common.h"

namespace irf {

// Operations of the elementwise kernel.  Binary: out = a (op) b.  Unary (b unused):
//   kAffine  out = alpha * a + beta   (copy, negation, scaling, scalar add / subtract)
//   kExp, kLog, kSqrt                 out = exp(a), log(a), sqrt(a)
//   kPow     out = a ** alpha         (alpha a scalar exponent)
enum EwOp : int { kEwAdd = 0, kEwSub, kEwMul, kEwDiv, kEwAffine, kEwExp, kEwLog, kEwSqrt, kEwPow, kEwOpCount };
inline bool ew_is_binary(int op) { return op <= kEwDiv; }
// Element (i0, i1, i2, i3) of operand X lives at x + i0*xs[0] + ... + i3*xs[3] (element
// strides; 0 for broadcast dimensions).  Unused leading dims have shape 1.  out must not
// partially overlap an input (an exact alias is fine: every element is read before written).
struct EwParams {
  int op = kEwAdd;
  i64 shape[4] = {1, 1, 1, 1};
  float* out = nullptr;     i64 os[4] = {0, 0, 0, 0};
  const float* a = nullptr; i64 as[4] = {0, 0, 0, 0};
  const float* b = nullptr; i64 bs[4] = {0, 0, 0, 0};
  float alpha = 1.f, beta = 0.f;
  int nthreads = 1;
};
// out (O, I) [+]= sum over r of x (O, R, I); x and out contiguous.
struct ReduceParams {
  float* out = nullptr;
  const float* x = nullptr;
  i64 O = 1, R = 1, I = 1;
  bool accumulate = false;
  int nthreads = 1;
};

}  // namespace irf
