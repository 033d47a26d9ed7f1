// gemm_ref.cpp: the scalar specification of kernels/gemm.cpp (double accumulation).
#include "kernels.h"

namespace irf {
namespace ref {

// C[b](i, j) = (accumulate ? C : 0) + sum_k A[b](i, k) B[b](k, j) + bias[j]
void gemm(const GemmParams& p) {
  for (i64 bi = 0; bi < p.batch; ++bi) {
    const float* A = p.a + bi * p.a_bs;
    const float* B = p.b + bi * p.b_bs;
    float* C = p.c + bi * p.c_bs;
    for (i64 i = 0; i < p.M; ++i)
      for (i64 j = 0; j < p.N; ++j) {
        double s = 0.0;
        for (i64 k = 0; k < p.K; ++k) s += double(A[i * p.a_rs + k * p.a_cs]) * double(B[k * p.b_rs + j * p.b_cs]);
        if (p.bias) s += p.bias[j];
        float* c = C + i * p.ldc + j;
        *c = p.accumulate ? float(double(*c) + s) : float(s);
      }
  }
}

}  // namespace ref
}  // namespace irf
