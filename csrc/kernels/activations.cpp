// activations.cpp: elementwise activations, forward then backward (compiled per ISA).
//
//   x, out, dout, dx: n contiguous elements.  act (irf::ref::Act):
//   gelu (erf):  out = 0.5 x (1 + erf(x / sqrt 2))                         (BERT "gelu")
//   gelu (tanh): out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) (GPT-2 "gelu_new")
//                computed as x * sigmoid(2u) = x / (1 + exp(-2u)) (the same function)
//   relu: max(x, 0);  sigmoid: 1 / (1 + exp(-x));  tanh: tanh(x)
// Backward takes x (gelu, relu) or the forward output (sigmoid, tanh) as `saved`.
#include "kernels.h"
#include "kernels/gelu_tables.h"
#include "kernels/norm_act_util.h"

namespace irf {
namespace IRF_ISA {
namespace {

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kTanhK = 0.79788456080286536f;        // sqrt(2 / pi)
constexpr float kTanhC = 0.044715f;
// GELU-erf derivative: h(x) = x P(x^2) / Q(x^2) (see act_bwd), coefficients from degree 7 down
constexpr float kGeluDP[] = {8.5911845978e-11f, 2.9041662277e-08f, 3.2906516241e-07f, 4.0239611437e-05f,
                             -4.2528839142e-05f, 1.4714711488e-02f, -3.5249944167e-02f, 7.9788455904e-01f};
constexpr float kGeluDQ[] = {5.2227966362e-09f, 2.6518347943e-07f, 8.8115991324e-06f, 2.0582958393e-04f,
                             3.4404779808e-03f, 3.9826893392e-02f, 2.8915406017e-01f, 1.f};

#if defined(__AVX512F__)
// GELU on AVX-512 (both forms): a polynomial per interval of width 1/4 instead of erf's rational
// function (a division and ten FMAs), the erf derivative's (a division and fourteen), or the tanh
// form's exp and division.  gelu = x s(x), s = Phi (erf form) or sigmoid(2u) (tanh form); s - 1/2
// and gelu' - 1/2 are odd, so they are tabled on |x|: u = 4|x| rounds (adding 1.5 * 2^23) to the
// interval j, t = u - j is exact, and one vpermt2ps per coefficient fetches interval j's.  Tables
// and their float32 error from tools/fit_gelu_tables.py (our own least-squares fits).  Measured
// against float64 over [-8, 8]: gelu max abs error 3.6e-7 / 3.4e-7 (erf / tanh; at most 0.50 of
// the tests' 3e-7 + 2e-6 |y| -- the rational erf form's 1 + erf cancelled to 3x that in the left
// tail), gelu' 1.17e-7 / 1.15e-7 (2.3e-7 / 2.1e-7 before).  In-process A/B at 2048 x 768
// fwd+bwd (Zen 5): erf form 1.37x faster at 1 thread, 1.35x at 2; tanh form 1.85x / 1.25-1.43x;
// at 2048 x 3072 (from DRAM) erf 1.05x / 1.16x, tanh 1.30x / 0.96-1.06x.
// The tables (kernels/gelu_tables.h): namespace gelu_tables, k{Erf,Tanh}{Fwd,Bwd}C, limits.
namespace gt = ::irf::gelu_tables;

// Interval j's polynomial (NC coefficients, table c) at |x| = ax, or 1/2 where ax >= lim
template <int NC>
IRF_INLINE vf gelu_table(vf ax, const float (&c)[NC][32], float lim) {
  const vf u = vmul(ax, vset1(4.f));
  const vf r = vadd(u, vset1(12582912.f));   // 1.5 * 2^23: round(u) in the low mantissa bits
  const vf t = vsub(u, vsub(r, vset1(12582912.f)));
  const __m512i j = _mm512_castps_si512(r);   // vpermt2ps reads the low 5 bits of each lane
  vf p = _mm512_permutex2var_ps(_mm512_load_ps(c[NC - 1]), j, _mm512_load_ps(c[NC - 1] + 16));
  for (int d = NC - 2; d >= 0; --d)
    p = vfma(p, t, _mm512_permutex2var_ps(_mm512_load_ps(c[d]), j, _mm512_load_ps(c[d] + 16)));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, vset1(lim), _CMP_GE_OQ), p, vset1(0.5f));   // NaN: p (NaN)
}

// Either form from its tables: gelu(x) = |x| k(|x|) + x / 2,  dout * gelu'(x) = dout (1/2 + sign(x) h(|x|))
template <int NC>
IRF_INLINE vf gelu_fwd_tabled(vf x, const float (&k)[NC][32], float lim) {
  const vf ax = vabs(x);
  return vfma(ax, gelu_table(ax, k, lim), vmul(vset1(0.5f), x));
}
template <int NC>
IRF_INLINE vf gelu_bwd_tabled(vf d, vf x, const float (&h)[NC][32], float lim) {
  return vmul(d, vadd(vset1(0.5f), vcopysign(gelu_table(vabs(x), h, lim), x)));
}
#endif

template <int ACT>
IRF_INLINE vf act_fwd(vf x) {
  const vf one = vset1(1.f);
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluErf) return gelu_fwd_tabled(x, gt::kErfFwdC, gt::kErfLimF);
  if (ACT == ref::kActGeluTanh) return gelu_fwd_tabled(x, gt::kTanhFwdC, gt::kTanhLimF);
#endif
  if (ACT == ref::kActGeluErf) {   // 0.5 x (1 + erf(x / sqrt 2))  (AVX2, generic)
    const vf h = vmul(vset1(0.5f), x);
    return vfma(h, verf(vmul(x, vset1(kSqrtHalf))), h);
  }
  if (ACT == ref::kActGeluTanh) {   // x / (1 + exp(-2u))  (AVX2, generic)
    const vf x2 = vmul(x, x);
    const vf m2u = vmul(vmul(x, vset1(-2.f * kTanhK)), vfma(x2, vset1(kTanhC), one));
    return vdiv(x, vadd(one, vexp(m2u)));
  } else if (ACT == ref::kActRelu) {
    return vmax(vzero(), x);   // operand order keeps NaN
  } else if (ACT == ref::kActSigmoid) {
    return vdiv(one, vadd(one, vexp(vsub(vzero(), x))));
  } else {
    return vtanh(x);
  }
}

// dx = dout * d out / d x, s = saved (x or the output, see above)
template <int ACT>
IRF_INLINE vf act_bwd(vf d, vf s) {
  const vf one = vset1(1.f);
#if defined(__AVX512F__)
  if (ACT == ref::kActGeluErf) return gelu_bwd_tabled(d, s, gt::kErfBwdC, gt::kErfLimB);
  if (ACT == ref::kActGeluTanh) return gelu_bwd_tabled(d, s, gt::kTanhBwdC, gt::kTanhLimB);
#endif
  if (ACT == ref::kActGeluErf) {   // (AVX2, generic)
    // d/dx [x Phi(x)] = Phi(x) + x phi(x) = 0.5 + h(x), h odd (Phi the normal CDF, phi its
    // density).  h(x) = x P(x^2) / Q(x^2) for |x| <= 6.2 (P, Q of degree 7: our own float64
    // rational fit on [0, 6.2], max error 2.4e-10 before float32 rounding), +-0.5 beyond
    // (h(6.2) = 0.5 - 1.1e-8).  One division instead of an erf and an exp: ~2x faster.
    const vf ax = vabs(s), a = vmin(vset1(6.2f), ax);   // operand order keeps NaN
    const vf h = vselect_lt(vset1(6.2f), ax, vset1(0.5f), vodd_rational(a, kGeluDP, kGeluDQ));
    return vmul(d, vadd(vset1(0.5f), vcopysign(h, s)));
  }
  if (ACT == ref::kActGeluTanh) {   // (AVX2, generic)
    // out = x * sig, sig = 1 / (1 + e), e = exp(-2u):  d out / dx = sig + x sig (1 - sig) 2 u',
    // u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2), and sig (1 - sig) = e sig^2 (no cancellation).
    // e is capped at exp(88) so that e sig^2 stays finite (it is ~0 there anyway).
    const vf x2 = vmul(s, s);
    const vf m2u = vmul(vmul(s, vset1(-2.f * kTanhK)), vfma(x2, vset1(kTanhC), one));
    const vf e = vexp(vmin(vset1(88.f), m2u));
    const vf sig = vdiv(one, vadd(one, e));
    const vf du2 = vmul(vset1(2.f * kTanhK), vfma(x2, vset1(3.f * kTanhC), one));
    const vf g = vfma(vmul(s, vmul(e, vmul(sig, sig))), du2, sig);
    return vmul(d, g);
  } else if (ACT == ref::kActRelu) {   // out = max(x, 0): passes dout where x > 0
    return vselect_lt(vzero(), s, d, vzero());
  } else if (ACT == ref::kActSigmoid) {   // d sigmoid = out (1 - out)
    return vmul(d, vmul(s, vsub(one, s)));
  } else {   // d tanh = 1 - out^2 = (1 - out)(1 + out)
    return vmul(d, vmul(vsub(one, s), vadd(one, s)));
  }
}

// One thread's range [lo, hi) of out = act(x) (NT: streaming stores; lo is a multiple of
// kBlock, so out + lo is as aligned as out)
template <int ACT, bool NT>
IRF_INLINE void fwd_range(float* out, const float* x, i64 lo, i64 hi) {
  i64 i = lo;
  for (; i + 2 * W <= hi; i += 2 * W) {
    const vf y0 = act_fwd<ACT>(vload(x + i)), y1 = act_fwd<ACT>(vload(x + i + W));
    vput<NT>(out + i, y0);
    vput<NT>(out + i + W, y1);
  }
  for (; i < hi; i += W) {
    const int r = hi - i < W ? int(hi - i) : W;
    vstore_part(out + i, act_fwd<ACT>(vload_part(x + i, r)), r);
  }
  if (NT) _mm_sfence();
}

template <int ACT, bool NT>
IRF_INLINE void bwd_range(float* dx, const float* dout, const float* saved, i64 lo, i64 hi) {
  i64 i = lo;
  for (; i + 2 * W <= hi; i += 2 * W) {
    const vf g0 = act_bwd<ACT>(vload(dout + i), vload(saved + i));
    const vf g1 = act_bwd<ACT>(vload(dout + i + W), vload(saved + i + W));
    vput<NT>(dx + i, g0);
    vput<NT>(dx + i + W, g1);
  }
  for (; i < hi; i += W) {
    const int r = hi - i < W ? int(hi - i) : W;
    vstore_part(dx + i, act_bwd<ACT>(vload_part(dout + i, r), vload_part(saved + i, r)), r);
  }
  if (NT) _mm_sfence();
}

template <int ACT>
void fwd_impl(float* out, const float* x, i64 n, int nthreads) {
  const bool nt = stream_ok(out, n, W, nthreads);
  parallel_elems(n, nthreads, [&](i64 lo, i64 hi) {
    if (nt) fwd_range<ACT, true>(out, x, lo, hi);
    else fwd_range<ACT, false>(out, x, lo, hi);
  });
}

template <int ACT>
void bwd_impl(float* dx, const float* dout, const float* saved, i64 n, int nthreads) {
  const bool nt = stream_ok(dx, n, W, nthreads);
  parallel_elems(n, nthreads, [&](i64 lo, i64 hi) {
    if (nt) bwd_range<ACT, true>(dx, dout, saved, lo, hi);
    else bwd_range<ACT, false>(dx, dout, saved, lo, hi);
  });
}

void act_forward(float* out, const float* x, i64 n, int act, int nthreads) {
  switch (act) {
    case ref::kActGeluErf: fwd_impl<ref::kActGeluErf>(out, x, n, nthreads); break;
    case ref::kActGeluTanh: fwd_impl<ref::kActGeluTanh>(out, x, n, nthreads); break;
    case ref::kActRelu: fwd_impl<ref::kActRelu>(out, x, n, nthreads); break;
    case ref::kActSigmoid: fwd_impl<ref::kActSigmoid>(out, x, n, nthreads); break;
    case ref::kActTanh: fwd_impl<ref::kActTanh>(out, x, n, nthreads); break;
    default: break;   // validated by the binding
  }
}

void act_backward(float* dx, const float* dout, const float* saved, i64 n, int act, int nthreads) {
  switch (act) {
    case ref::kActGeluErf: bwd_impl<ref::kActGeluErf>(dx, dout, saved, n, nthreads); break;
    case ref::kActGeluTanh: bwd_impl<ref::kActGeluTanh>(dx, dout, saved, n, nthreads); break;
    case ref::kActRelu: bwd_impl<ref::kActRelu>(dx, dout, saved, n, nthreads); break;
    case ref::kActSigmoid: bwd_impl<ref::kActSigmoid>(dx, dout, saved, n, nthreads); break;
    case ref::kActTanh: bwd_impl<ref::kActTanh>(dx, dout, saved, n, nthreads); break;
    default: break;
  }
}

// simd.h transcendentals, for tests/test_simd_math.py: fn 0 vexp, 1 vtanh, 2 verf.
void simd_math(float* out, const float* x, i64 n, int fn) {
  for (i64 i = 0; i < n; i += W) {
    const int r = n - i < W ? int(n - i) : W;
    const vf v = vload_part(x + i, r);
    vstore_part(out + i, fn == 0 ? vexp(v) : fn == 1 ? vtanh(v) : verf(v), r);
  }
}

}  // namespace

void register_activations(KernelTable& t) {
  t.act_forward = &act_forward;
  t.act_backward = &act_backward;
  t.simd_math = &simd_math;
}

}  // namespace IRF_ISA
}  // namespace irf
