// softmax.cpp: softmax and log-softmax over the last dimension, forward then backward.
//
//   x, out, dout, dx: (N, C) contiguous.
//   softmax:     out = exp(x - max) / sum(exp(x - max))        (max-shifted: no overflow)
//   log-softmax: out = x - max - log(sum(exp(x - max)))
// Backward uses only the saved output.
#include <cmath>

#include "kernels.h"
#include "kernels/norm_act_util.h"

namespace irf {
namespace IRF_ISA {
namespace {

IRF_INLINE float row_max(const float* x, i64 C) {
  vf m0 = vset1(-__builtin_inff()), m1 = m0;
  i64 j = 0;
  for (; j + 2 * W <= C; j += 2 * W) {
    m0 = vmax(m0, vload(x + j));
    m1 = vmax(m1, vload(x + j + W));
  }
  for (; j + W <= C; j += W) m0 = vmax(m0, vload(x + j));
  float m = vreduce_max(vmax(m0, m1));
  for (; j < C; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// sum(exp(x - m)), also storing exp(x - m) into e when e is not null
IRF_INLINE float row_sumexp(float* e, const float* x, float m, i64 C) {
  const vf vm = vset1(m);
  vf s0 = vzero(), s1 = vzero(), t0 = vzero();
  i64 j = 0;
  // blocked summation: block sums of up to 32 * 2W terms are added into t0 (long vocab rows)
  for (i64 k = 0; j + 2 * W <= C; j += 2 * W) {
    const vf e0 = vexp_nonpos(vsub(vload(x + j), vm)), e1 = vexp_nonpos(vsub(vload(x + j + W), vm));
    if (e) {
      vstore(e + j, e0);
      vstore(e + j + W, e1);
    }
    s0 = vadd(s0, e0);
    s1 = vadd(s1, e1);
    if (++k == 32) {
      t0 = vadd(t0, vadd(s0, s1));
      s0 = s1 = vzero();
      k = 0;
    }
  }
  s1 = vadd(s1, t0);
  for (; j < C; j += W) {
    const int r = C - j < W ? int(C - j) : W;
    vf ev = vexp_nonpos(vsub(vload_part(x + j, r), vm));
    if (e) vstore_part(e + j, ev, r);
    if (r < W) {   // zero the lanes past the row end
      float tmp[W];
      vstore_part(tmp, ev, r);
      ev = vload_part(tmp, r);
    }
    s0 = vadd(s0, ev);
  }
  return vreduce_add(vadd(s0, s1));
}

// Softmax's last pass over row i, y *= inv, also takes the max of row i + 1 (xn; null: none)
// with row_max's accumulators in row_max's order, so that max is bitwise row_max's; pf (null:
// none) is prefetched a line at a time.  Returns the max (0 without xn).  Fused, the max pass
// no longer waits for the end of the previous row: in-process A/B runs of fwd+bwd (2048x768,
// alternating per call, 12-16 rounds) measured AVX-512 Zen 5 1 thread +7-12% with inputs in L3
// and +1-8% from DRAM, 2 threads +3.5-6.8% / +2-10%; the AVX2 build +4-10%.  Log-softmax, whose
// last pass reads x and writes y (lines not yet in L1), measured -6..+2% fused and keeps the
// separate max pass.
IRF_INLINE float scale_row_next_max(float* yi, vf inv, const float* xn, const float* pf, i64 C) {
  vf m0 = vset1(-__builtin_inff()), m1 = m0;
  i64 j = 0;
  for (; j + 2 * W <= C; j += 2 * W) {
    if (pf)
      for (i64 k = j; k < j + 2 * W; k += kLineFloats) __builtin_prefetch(pf + k, 0, 3);
    vstore(yi + j, vmul(vload(yi + j), inv));
    vstore(yi + j + W, vmul(vload(yi + j + W), inv));
    if (xn) {
      m0 = vmax(m0, vload(xn + j));
      m1 = vmax(m1, vload(xn + j + W));
    }
  }
  for (; j + W <= C; j += W) {
    vstore(yi + j, vmul(vload(yi + j), inv));
    if (xn) m0 = vmax(m0, vload(xn + j));
  }
  if (j < C) vstore_part(yi + j, vmul(vload_part(yi + j, int(C - j)), inv), int(C - j));
  if (!xn) return 0.f;
  float m = vreduce_max(vmax(m0, m1));
  for (; j < C; ++j) m = xn[j] > m ? xn[j] : m;
  return m;
}

// Rows [r0, r1), plain stores: the backward reads the output, and streamed it came back from
// DRAM.  Softmax writes exp(x - max) into its output row and scales it there in L1; streaming
// stores instead (the exp values going to a scratch row first) were 8-33% slower fwd+bwd on
// Zen 3 (2048x768, A/B in both orders, 1 and 2 threads, inputs in or beyond L3).  Log-softmax
// streamed its output until in-process A/B runs of fwd+bwd (2048x768, env switch per call,
// alternating) found plain stores faster: AVX-512 Zen 5 1 thread 1.20-1.29x with inputs in L3,
// 1.20-1.26x from DRAM (2 threads already stored plainly: streaming there was 0.64-0.82x); the
// AVX2 build on the same CPU 1.02-1.08x (1 thread), 1.08-1.23x (2 threads).
IRF_INLINE void softmax_rows(float* out, const float* x, i64 r0, i64 r1, i64 C, bool log) {
  if (!log) {
    float m = r0 < r1 ? row_max(x + r0 * C, C) : 0.f;
    for (i64 i = r0; i < r1; ++i) {
      const float* xi = x + i * C;
      float* yi = out + i * C;
      const float* pf = i + kRowAhead < r1 ? xi + kRowAhead * C : nullptr;   // prefetched in the last pass
      const vf inv = vset1(1.f / row_sumexp(yi, xi, m, C));                   // yi = exp(x - max), / sum
      m = scale_row_next_max(yi, inv, i + 1 < r1 ? xi + C : nullptr, pf, C);
    }
    return;
  }
  for (i64 i = r0; i < r1; ++i) {
    const float* xi = x + i * C;
    float* yi = out + i * C;
    const float* pf = i + kRowAhead < r1 ? xi + kRowAhead * C : nullptr;   // prefetched in the last pass
    const float m = row_max(xi, C);
    // out = x - max - log(sum exp(x - max)); x - max first (exact for large |x|)
    const vf vl = vset1(std::log(row_sumexp(nullptr, xi, m, C))), vm = vset1(m);
    for_row_vectors(C, pf, nullptr, [&](i64 j, int r) {
      if (r == W) vstore(yi + j, vsub(vsub(vload(xi + j), vm), vl));
      else vstore_part(yi + j, vsub(vsub(vload_part(xi + j, r), vm), vl), r);
    });
  }
}

void softmax_forward(float* out, const float* x, i64 N, i64 C, bool log, int nthreads) {
  if (N <= 0 || C <= 0) return;
  parallel_for(N, min_rows(C), nthreads, [&](i64 r0, i64 r1) { softmax_rows(out, x, r0, r1, C, log); });
}

// softmax:     dx = out * (dout - sum(dout * out))       (Jacobian diag(out) - out out^T)
// log-softmax: dx = dout - exp(out) * sum(dout)          (d out_j / d x_k = [j == k] - softmax_k)
template <bool NT>
IRF_INLINE void softmax_bwd_rows(float* dx, const float* dout, const float* out, i64 r0, i64 r1, i64 C, bool log) {
  for (i64 i = r0; i < r1; ++i) {
    const float* di = dout + i * C;
    const float* yi = out + i * C;
    float* gi = dx + i * C;
    const i64 ahead = i + kBwdRowAhead < r1 ? kBwdRowAhead : 1;   // the row prefetched during
    const bool more = i + ahead < r1;                               // the second pass
    const float* pf_d = more ? di + ahead * C : nullptr;
    const float* pf_y = more ? yi + ahead * C : nullptr;
    vf s0 = vzero(), s1 = vzero();
    i64 j = 0;
    if (!log) {
      for (; j + 2 * W <= C; j += 2 * W) {
        s0 = vfma(vload(di + j), vload(yi + j), s0);
        s1 = vfma(vload(di + j + W), vload(yi + j + W), s1);
      }
      for (; j < C; j += W) {
        const int r = C - j < W ? int(C - j) : W;
        s0 = vfma(vload_part(di + j, r), vload_part(yi + j, r), s0);
      }
      const vf dot = vset1(vreduce_add(vadd(s0, s1)));
      for_row_vectors(C, pf_d, pf_y, [&](i64 k, int r) {
        if (r == W) vput<NT>(gi + k, vmul(vload(yi + k), vsub(vload(di + k), dot)));
        else vstore_part(gi + k, vmul(vload_part(yi + k, r), vsub(vload_part(di + k, r), dot)), r);
      });
    } else {
      for (; j + 2 * W <= C; j += 2 * W) {
        s0 = vadd(s0, vload(di + j));
        s1 = vadd(s1, vload(di + j + W));
      }
      for (; j < C; j += W) s0 = vadd(s0, vload_part(di + j, C - j < W ? int(C - j) : W));
      const vf sum = vset1(vreduce_add(vadd(s0, s1)));
      for_row_vectors(C, pf_d, pf_y, [&](i64 k, int r) {
        if (r == W) vput<NT>(gi + k, vsub(vload(di + k), vmul(vexp_nonpos(vload(yi + k)), sum)));
        else vstore_part(gi + k, vsub(vload_part(di + k, r), vmul(vexp_nonpos(vload_part(yi + k, r)), sum)), r);
      });
    }
  }
  if (NT) _mm_sfence();
}

void softmax_backward(float* dx, const float* dout, const float* out, i64 N, i64 C, bool log, int nthreads) {
  if (N <= 0 || C <= 0) return;
  const bool nt = stream_ok(dx, N * C, C, nthreads);
  parallel_for(N, min_rows(C), nthreads, [&](i64 r0, i64 r1) {
    if (nt) softmax_bwd_rows<true>(dx, dout, out, r0, r1, C, log);
    else softmax_bwd_rows<false>(dx, dout, out, r0, r1, C, log);
  });
}

}  // namespace

void register_softmax(KernelTable& t) {
  t.softmax_forward = &softmax_forward;
  t.softmax_backward = &softmax_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
