// bias_add.cpp: residual add, bias add and column sums (the bias gradient of a linear layer).
//
//   add:      out (n) = a (n) + b (n)
//   add_bias: out (N, C) = x (N, C) + bias (C,) on every row
//   sum_rows: out (C,) (+)= sum over the N rows of x (N, C)      (backward of add_bias for bias;
//             deterministic: fixed row chunks added in a fixed order, see norm_act_util.h)
#include "kernels.h"
#include "kernels/norm_act_util.h"

namespace irf {
namespace IRF_ISA {
namespace {

void add(float* out, const float* a, const float* b, i64 n, int nthreads) {
  parallel_elems(n, nthreads, [&](i64 lo, i64 hi) {
    i64 i = lo;
    for (; i + W <= hi; i += W) vstore(out + i, vadd(vload(a + i), vload(b + i)));
    if (i < hi) vstore_part(out + i, vadd(vload_part(a + i, int(hi - i)), vload_part(b + i, int(hi - i))), int(hi - i));
  });
}

void add_bias(float* out, const float* x, const float* bias, i64 N, i64 C, int nthreads) {
  if (N <= 0 || C <= 0) return;
  parallel_for(N, min_rows(C), nthreads, [&](i64 r0, i64 r1) {
    for (i64 i = r0; i < r1; ++i) {
      const float* xi = x + i * C;
      float* oi = out + i * C;
      i64 j = 0;
      for (; j + W <= C; j += W) vstore(oi + j, vadd(vload(xi + j), vload(bias + j)));
      if (j < C) vstore_part(oi + j, vadd(vload_part(xi + j, int(C - j)), vload_part(bias + j, int(C - j))), int(C - j));
    }
  });
}

// Adds the rows r0..r1-1 of x into acc (C), row by row.
IRF_INLINE void add_rows(float* acc, const float* x, i64 r0, i64 r1, i64 C) {
  i64 j = 0;
  for (; j + 4 * W <= C; j += 4 * W) {   // 4 vectors of columns stay in registers over the rows
    vf s0 = vload(acc + j), s1 = vload(acc + j + W), s2 = vload(acc + j + 2 * W), s3 = vload(acc + j + 3 * W);
    for (i64 i = r0; i < r1; ++i) {
      const float* xi = x + i * C + j;
      s0 = vadd(s0, vload(xi));
      s1 = vadd(s1, vload(xi + W));
      s2 = vadd(s2, vload(xi + 2 * W));
      s3 = vadd(s3, vload(xi + 3 * W));
    }
    vstore(acc + j, s0);
    vstore(acc + j + W, s1);
    vstore(acc + j + 2 * W, s2);
    vstore(acc + j + 3 * W, s3);
  }
  for (; j < C; j += W) {
    const int r = C - j < W ? int(C - j) : W;
    vf s = vload_part(acc + j, r);
    for (i64 i = r0; i < r1; ++i) s = vadd(s, vload_part(x + i * C + j, r));
    vstore_part(acc + j, s, r);
  }
}

void sum_rows(float* out, const float* x, i64 N, i64 C, bool accumulate, int nthreads) {
  if (C <= 0) return;
  if (N <= 0) {
    if (!accumulate)
      for (i64 j = 0; j < C; ++j) out[j] = 0.f;
    return;
  }
  const i64 nch = row_chunks(N);
  float* part = static_cast<float*>(workspace(kWsScratch1, sizeof(float) * size_t(nch * C)));
  parallel_for(nch, 1 + min_rows(C) * nch / N, nthreads, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      float* acc = part + c * C;
      for (i64 j = 0; j < C; ++j) acc[j] = 0.f;
      i64 r0, r1;
      split_range(N, int(c), int(nch), r0, r1);
      add_rows(acc, x, r0, r1, C);
    }
  });
  reduce_chunks(out, part, nch, C, C, accumulate, nthreads);
}

}  // namespace

void register_bias_add(KernelTable& t) {
  t.add = &add;
  t.add_bias = &add_bias;
  t.sum_rows = &sum_rows;
}

}  // namespace IRF_ISA
}  // namespace irf
