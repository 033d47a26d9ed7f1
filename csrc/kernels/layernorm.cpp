// layernorm.cpp: LayerNorm over the last dimension, forward then backward (compiled per ISA).
//
//   x, out, dout, dx: (N, C) contiguous;  mean, rstd: (N,);  weight, bias, dweight, dbias: (C,)
//   out = (x - mean) * rstd * weight + bias,  mean = sum(x) / C,
//   rstd = 1 / sqrt(sum((x - mean)^2) / C + eps)   (statistics about a pivot near the mean, see
//   row_stats: accurate for rows with a large common offset; the variance is never < 0)
#include <cmath>

#include "kernels.h"
#include "kernels/norm_act_util.h"

namespace irf {
namespace IRF_ISA {
namespace {

IRF_INLINE float row_sum(const float* x, i64 C) {
  vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
  i64 j = 0;
  for (; j + 4 * W <= C; j += 4 * W) {
    a0 = vadd(a0, vload(x + j));
    a1 = vadd(a1, vload(x + j + W));
    a2 = vadd(a2, vload(x + j + 2 * W));
    a3 = vadd(a3, vload(x + j + 3 * W));
  }
  for (; j + W <= C; j += W) a0 = vadd(a0, vload(x + j));
  if (j < C) a1 = vadd(a1, vload_part(x + j, int(C - j)));
  return vreduce_add(vadd(vadd(a0, a1), vadd(a2, a3)));
}

// One pass about a pivot p: sd = sum(x - p), returns sum((x - p)^2).  Then mean = p + sd / C and
// var = sum((x - p)^2) / C - (sd / C)^2, which loses accuracy only when |mean - p| is large
// against the row's spread (the caller checks, see layernorm_rows).
IRF_INLINE float row_sqdev(const float* x, float m, i64 C, float& sd) {
  const vf vm = vset1(m);
  vf a0 = vzero(), a1 = vzero(), s0 = vzero(), s1 = vzero();
  i64 j = 0;
  {   // four independent accumulator pairs: the FMA latency, not the loads, bounds this loop
    vf a2 = vzero(), a3 = vzero(), s2 = vzero(), s3 = vzero();
    for (; j + 4 * W <= C; j += 4 * W) {
      const vf d0 = vsub(vload(x + j), vm), d1 = vsub(vload(x + j + W), vm);
      const vf d2 = vsub(vload(x + j + 2 * W), vm), d3 = vsub(vload(x + j + 3 * W), vm);
      s0 = vadd(s0, d0);
      s1 = vadd(s1, d1);
      s2 = vadd(s2, d2);
      s3 = vadd(s3, d3);
      a0 = vfma(d0, d0, a0);
      a1 = vfma(d1, d1, a1);
      a2 = vfma(d2, d2, a2);
      a3 = vfma(d3, d3, a3);
    }
    s0 = vadd(s0, s2);
    s1 = vadd(s1, s3);
    a0 = vadd(a0, a2);
    a1 = vadd(a1, a3);
  }
  for (; j + 2 * W <= C; j += 2 * W) {
    const vf d0 = vsub(vload(x + j), vm), d1 = vsub(vload(x + j + W), vm);
    s0 = vadd(s0, d0);
    s1 = vadd(s1, d1);
    a0 = vfma(d0, d0, a0);
    a1 = vfma(d1, d1, a1);
  }
  for (; j + W <= C; j += W) {
    const vf d = vsub(vload(x + j), vm);
    s0 = vadd(s0, d);
    a0 = vfma(d, d, a0);
  }
  float tail = 0.f, tail_s = 0.f;
  for (; j < C; ++j) {
    tail_s += x[j] - m;
    tail += (x[j] - m) * (x[j] - m);
  }
  sd = vreduce_add(vadd(s0, s1)) + tail_s;
  return vreduce_add(vadd(a0, a1)) + tail;
}

// Row statistics: mean and var = sum((x - mean)^2) / C (never < 0).  One pass about the pivot
// p = the mean of the first kPivotN values (x - p is nearly exact, so rows with a large common
// offset lose nothing); var = E(x - p)^2 - dm^2 with dm = mean - p cancels about
// eps * dm^2 / var of var, so when dm^2 > var / 3 (the first values are not typical of the row)
// the row takes a second pass about the mean itself.  Since the first kPivotN values average to
// p, dm^2 <= (C / kPivotN) var: such rows are rare, and no row loses more than a few ulp to the
// cancellation.  One pass instead of two: layernorm forward 10% faster with inputs in L3, 14-19%
// from DRAM (AVX-512 Zen 5).
constexpr i64 kPivotN = 64;
IRF_INLINE void row_stats(const float* x, i64 C, float& mean, float& var) {
  const i64 n = C < kPivotN ? C : kPivotN;
  const float p = row_sum(x, n) / float(n);
  float sd;
  float ss = row_sqdev(x, p, C, sd);
  float dm = sd / float(C);
  float m = p + dm;
  if (3.f * dm * dm > ss / float(C) - dm * dm) {   // pivot far from the mean: pass about it
    ss = row_sqdev(x, m, C, sd);
    dm = sd / float(C);
    m += dm;
  }
  const float v = ss / float(C) - dm * dm;
  mean = m;
  var = v > 0.f ? v : 0.f;
}

// out = (x - mean) * rstd * weight + bias, one row (x - mean first: exact for large offsets);
// NT: streaming stores (then C is a multiple of W and out vector-aligned, see stream_ok);
// pf: a row to prefetch meanwhile (or null), see for_row_vectors.
template <bool NT, bool HW, bool HB>
IRF_INLINE void row_normalize(float* out, const float* x, const float* weight, const float* bias, float mean,
                              float rstd, i64 C, const float* pf) {
  const vf vr = vset1(rstd), vm = vset1(mean);
  for_row_vectors(C, pf, nullptr, [&](i64 j, int r) {
    const bool full = r == W;
    const vf xh = vmul(vsub(full ? vload(x + j) : vload_part(x + j, r), vm), vr);
    vf y = xh;
    if (HW && HB) y = vfma(xh, full ? vload(weight + j) : vload_part(weight + j, r), full ? vload(bias + j) : vload_part(bias + j, r));
    else if (HW) y = vmul(xh, full ? vload(weight + j) : vload_part(weight + j, r));
    else if (HB) y = vadd(xh, full ? vload(bias + j) : vload_part(bias + j, r));
    if (full) vput<NT>(out + j, y);
    else vstore_part(out + j, y, r);
  });
}

template <bool NT, bool HW, bool HB>
void layernorm_rows(float* out, float* mean, float* rstd, const float* x, const float* weight,
                    const float* bias, i64 C, float eps, i64 r0, i64 r1) {
  for (i64 i = r0; i < r1; ++i) {
    const float* xi = x + i * C;
    float m, var;
    row_stats(xi, C, m, var);
    const float rs = 1.f / std::sqrt(var + eps);               // rstd = 1 / sqrt(var + eps)
    mean[i] = m;
    rstd[i] = rs;
    // out = xhat * weight + bias, prefetching the next row
    row_normalize<NT, HW, HB>(out + i * C, xi, weight, bias, m, rs, C, i + kRowAhead < r1 ? xi + kRowAhead * C : nullptr);
  }
  if (NT) _mm_sfence();
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* weight,
                       const float* bias, i64 N, i64 C, float eps, int nthreads) {
  if (N <= 0 || C <= 0) return;
  const bool nt = stream_ok(out, N * C, C, nthreads);
  parallel_for(N, min_rows(C), nthreads, [&](i64 r0, i64 r1) {
    with_flags([&](auto NT, auto HW, auto HB) {
      layernorm_rows<NT, HW, HB>(out, mean, rstd, x, weight, bias, C, eps, r0, r1);
    }, nt, weight != nullptr, bias != nullptr);
  });
}

// Backward.  With xhat = (x - mean) * rstd and g = dout * weight (dout without weight),
// differentiating out = xhat * weight + bias and xhat through mean and rstd gives
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat));
// a row's contributions dout * xhat (dweight) and dout (dbias) are added into dw_acc, db_acc.
// HW: weight given;  PG: parameter gradients wanted (dw_acc, db_acc);  NT: streaming dx stores.

// Pass 1 of a row: va = mean(g), vb = mean(g * xhat), broadcast.
template <bool HW>
IRF_INLINE void row_grad_means(const float* dout, const float* x, const float* weight, float mean, float rstd,
                               i64 C, vf& va, vf& vb) {
  const vf vr = vset1(rstd), vm = vset1(mean);
  vf sg0 = vzero(), sg1 = vzero(), sgx0 = vzero(), sgx1 = vzero();
  i64 j = 0;
  for (; j + 2 * W <= C; j += 2 * W) {
    const vf xh0 = vmul(vsub(vload(x + j), vm), vr), xh1 = vmul(vsub(vload(x + j + W), vm), vr);
    vf g0 = vload(dout + j), g1 = vload(dout + j + W);
    if (HW) {
      g0 = vmul(g0, vload(weight + j));
      g1 = vmul(g1, vload(weight + j + W));
    }
    sg0 = vadd(sg0, g0);
    sg1 = vadd(sg1, g1);
    sgx0 = vfma(g0, xh0, sgx0);
    sgx1 = vfma(g1, xh1, sgx1);
  }
  for (; j < C; j += W) {
    const int r = C - j < W ? int(C - j) : W;
    const vf xh = vmul(vsub(vload_part(x + j, r), vm), vr);   // lanes >= r: g = 0 below
    vf g = vload_part(dout + j, r);
    if (HW) g = vmul(g, vload_part(weight + j, r));
    sg0 = vadd(sg0, g);
    sgx0 = vfma(g, xh, sgx0);
  }
  const float invC = 1.f / float(C);
  va = vset1(vreduce_add(vadd(sg0, sg1)) * invC);
  vb = vset1(vreduce_add(vadd(sgx0, sgx1)) * invC);
}

// R (1 or 2) consecutive rows (dx, dout, x, mean, rstd point at the first): pass 1 for each,
// then one pass 2 over them together: dx, and the parameter-gradient partials (dweight +=
// dout * xhat, dbias += dout) added row after row -- the same operations in the same order as
// one row at a time, so bitwise the same, but the partials are loaded and stored once per R
// rows (3 stores per vector of a row become 2: layernorm backward 244 -> 223 us at 1 thread with
// inputs in L3 on an AVX-512 Zen 5, 2048x768; neutral at 2 threads and from DRAM; four rows at
// once were slower).  pf_dout / pf_x: the next R rows (or null), prefetched during pass 2.
template <int R, bool HW, bool PG, bool NT>
IRF_INLINE void rows_grad(float* dx, float* dw_acc, float* db_acc, const float* dout, const float* x,
                          const float* weight, const float* mean, const float* rstd, i64 C,
                          const float* pf_dout, const float* pf_x) {
  vf vr[R], vm[R], va[R], vb[R];
  for (int q = 0; q < R; ++q) {
    row_grad_means<HW>(dout + q * C, x + q * C, weight, mean[q], rstd[q], C, va[q], vb[q]);
    vr[q] = vset1(rstd[q]);
    vm[q] = vset1(mean[q]);
  }
  auto step = [&](i64 k, int r) {
    const bool full = r == W;
    vf w = vzero(), pw = vzero(), pb = vzero();
    if (HW) w = full ? vload(weight + k) : vload_part(weight + k, r);
    if (PG) {
      pw = full ? vload(dw_acc + k) : vload_part(dw_acc + k, r);
      pb = full ? vload(db_acc + k) : vload_part(db_acc + k, r);
    }
    for (int q = 0; q < R; ++q) {
      const float* xq = x + q * C + k;
      const float* dq = dout + q * C + k;
      const vf xh = vmul(vsub(full ? vload(xq) : vload_part(xq, r), vm[q]), vr[q]);
      const vf d = full ? vload(dq) : vload_part(dq, r);
      const vf g = HW ? vmul(d, w) : d;
      const vf dxv = vmul(vr[q], vsub(vsub(g, va[q]), vmul(xh, vb[q])));
      if (full) vput<NT>(dx + q * C + k, dxv);
      else vstore_part(dx + q * C + k, dxv, r);
      if (PG) {
        pw = vfma(d, xh, pw);
        pb = vadd(d, pb);
      }
    }
    if (PG) {
      if (full) {
        vstore(dw_acc + k, pw);
        vstore(db_acc + k, pb);
      } else {
        vstore_part(dw_acc + k, pw, r);
        vstore_part(db_acc + k, pb, r);
      }
    }
  };
  for_row_vectors<R>(C, pf_x, pf_dout, step);
}

template <bool HW, bool PG, bool NT>
void rows_backward(float* dx, float* dw, float* db, const float* dout, const float* x, const float* mean,
                   const float* rstd, const float* weight, i64 C, i64 r0, i64 r1) {
  i64 i = r0;
  for (; i + 2 <= r1; i += 2) {
    const bool more = i + 4 <= r1;
    rows_grad<2, HW, PG, NT>(dx + i * C, dw, db, dout + i * C, x + i * C, weight, mean + i, rstd + i, C,
                             more ? dout + (i + 2) * C : nullptr, more ? x + (i + 2) * C : nullptr);
  }
  if (i < r1)
    rows_grad<1, HW, PG, NT>(dx + i * C, dw, db, dout + i * C, x + i * C, weight, mean + i, rstd + i, C,
                             nullptr, nullptr);
  if (NT) _mm_sfence();
}

void layernorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* weight, i64 N, i64 C,
                        int nthreads) {
  if (N <= 0 || C <= 0) return;
  const bool params = dweight != nullptr;
  // dx streamed from 4 MiB at any thread count (stream_ok's single-thread threshold), unlike the
  // other row kernels' outputs at 2 threads: in a fwd+bwd pair the forward's output stays alive
  // through the backward (x, out, dout, dx: 25 MB at 2048x768), and a plain-stored dx then
  // evicts the inputs and reads its own lines back first.  In-process A/B, 2 threads, 2048x768
  // (AVX-512 Zen 5): fwd+bwd with inputs in L3 1.23-1.49x faster (six runs), from DRAM
  // 1.00-1.25x; only a backward alone into a just-freed cached buffer was faster plain.  The
  // other backward kernels measured the same way (one run each, warm / cold) were mixed: GELU
  // tanh +4% / +13%, softmax +8% / -5%, GELU erf -13% / -2%, log-softmax -16% / -25%, so they
  // keep the general rule.
  const bool nt = stream_ok(dx, N * C, C, 1);
  auto rows = [&](float* dw, float* db, i64 r0, i64 r1) {
    with_flags([&](auto HW, auto PG, auto NT) {
      rows_backward<HW, PG, NT>(dx, dw, db, dout, x, mean, rstd, weight, C, r0, r1);
    }, weight != nullptr, dw != nullptr, nt);
  };
  if (!params) {
    parallel_for(N, min_rows(C), nthreads, [&](i64 r0, i64 r1) { rows(nullptr, nullptr, r0, r1); });
    return;
  }
  // Parameter gradients: per-chunk partials [dweight (C) | dbias (C)], reduced in chunk order.
  const i64 nch = row_chunks(N), ld = 2 * C;
  float* part = static_cast<float*>(workspace(kWsScratch1, sizeof(float) * size_t(nch * ld)));
  parallel_for(nch, 1 + min_rows(C) * nch / N, nthreads, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      float* dw = part + c * ld;
      float* db = dw + C;
      for (i64 j = 0; j < ld; ++j) dw[j] = 0.f;
      i64 r0, r1;
      split_range(N, int(c), int(nch), r0, r1);
      rows(dw, db, r0, r1);
    }
  });
  reduce_chunks(dweight, part, nch, ld, C, true, nthreads);   // dweight += sum of partials
  if (dbias) reduce_chunks(dbias, part + C, nch, ld, C, true, nthreads);
}

}  // namespace

void register_layernorm(KernelTable& t) {
  t.layernorm_forward = &layernorm_forward;
  t.layernorm_backward = &layernorm_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
