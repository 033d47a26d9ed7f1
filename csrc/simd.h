// simd.h: one small vector vocabulary per ISA.  Included only by csrc/kernels/*.cpp, which
// are compiled once per ISA with IRF_ISA defined to generic | avx2 | avx512; everything here
// lives in irf::<isa> so the three copies never meet at link time.
//
//   vf            one vector of W floats
//   vzero/vset1   constants;   vload/vstore unaligned;   vload_part/vstore_part first n < W lanes
//   vfma(a,b,c)   a*b + c (one rounding on AVX2/AVX-512, two on generic)
//   vadd vsub vmul vdiv vmax vmin, vreduce_add / vreduce_max (horizontal)
//   vexp          exp with max relative error ~2e-7 (0 below -87.3, +inf above 88.7)
//   vsqrt         correctly rounded square root;  kTileRows: rows of a register-blocked tile
//   vabs vcopysign vselect_lt   sign and per-lane select helpers
//   vtanh verf    tanh and erf (shared code for every ISA; measured error bounds at each)
#pragma once
#include <cstring>

#include "common.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#else
#include <xmmintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef IRF_ISA
#error "simd.h is for kernel sources compiled once per ISA (IRF_ISA must be defined)"
#endif

#define IRF_INLINE inline __attribute__((always_inline))

namespace irf {
namespace IRF_ISA {

#if defined(__AVX512F__)
using vf = __m512;
constexpr int W = 16;
IRF_INLINE vf vzero() { return _mm512_setzero_ps(); }
IRF_INLINE vf vset1(float x) { return _mm512_set1_ps(x); }
IRF_INLINE vf vload(const float* p) { return _mm512_loadu_ps(p); }
IRF_INLINE void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
IRF_INLINE __mmask16 vmask(int n) { return (__mmask16)((1u << n) - 1u); }
IRF_INLINE vf vload_part(const float* p, int n) { return _mm512_maskz_loadu_ps(vmask(n), p); }
IRF_INLINE void vstore_part(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, vmask(n), v); }
IRF_INLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
IRF_INLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
IRF_INLINE vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
IRF_INLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
IRF_INLINE vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
IRF_INLINE vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
IRF_INLINE vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
IRF_INLINE float vreduce_add(vf v) { return _mm512_reduce_add_ps(v); }
IRF_INLINE float vreduce_max(vf v) { return _mm512_reduce_max_ps(v); }
// exp(x) = 2^n * p(r), r = x - n ln2, |r| <= ln2/2, degree-6 polynomial (Cephes expf
// coefficients): max relative error 2e-7 (about 2 ulp) for x in [-86, 88.72]; results below
// FLT_MIN (x < -87.3, and -inf) are 0, x > 88.72 gives +inf, NaN gives NaN.
IRF_INLINE vf vexp(vf x) {
  const vf hi = vset1(88.7228f), lo = vset1(-87.33654f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  const __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
  x = vmin(hi, vmax(lo, x));   // operand order keeps NaN (max/min return the 2nd on NaN)
  const vf n = _mm512_roundscale_ps(vmul(x, vset1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = vfma(n, vset1(-0.693359375f), x);
  r = vfma(n, vset1(2.12194440e-4f), r);
  vf p = vset1(1.9875691500e-4f);
  p = vfma(p, r, vset1(1.3981999507e-3f));
  p = vfma(p, r, vset1(8.3334519073e-3f));
  p = vfma(p, r, vset1(4.1665795894e-2f));
  p = vfma(p, r, vset1(1.6666665459e-1f));
  p = vfma(p, r, vset1(5.0000001201e-1f));
  p = vfma(vmul(p, r), r, vadd(r, vset1(1.f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(126)), 23);
  vf y = vmul(vadd(p, p), _mm512_castsi512_ps(e));   // 2p * 2^(n-1): n may be 128
  y = _mm512_mask_mov_ps(y, under, vzero());
  return _mm512_mask_mov_ps(y, over, vset1(__builtin_inff()));
}
// Sign and select helpers (used by vtanh / verf below and by the activation kernels).
//   vabs(v) |v|;  vcopysign(m, s) |m| with the sign bit of s;  vselect_lt(a, b, x, y) a < b ? x : y
//   (per lane, ordered compare: a NaN lane picks y).
IRF_INLINE vf vabs(vf v) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff))); }
IRF_INLINE vf vcopysign(vf m, vf s) {
  const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castps_si512(m)),
                                             _mm512_and_si512(sign, _mm512_castps_si512(s))));
}
IRF_INLINE vf vselect_lt(vf a, vf b, vf x, vf y) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
}
#elif defined(__AVX2__)
using vf = __m256;
constexpr int W = 8;
IRF_INLINE vf vzero() { return _mm256_setzero_ps(); }
IRF_INLINE vf vset1(float x) { return _mm256_set1_ps(x); }
IRF_INLINE vf vload(const float* p) { return _mm256_loadu_ps(p); }
IRF_INLINE void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
IRF_INLINE __m256i vmask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
IRF_INLINE vf vload_part(const float* p, int n) { return _mm256_maskload_ps(p, vmask(n)); }
IRF_INLINE void vstore_part(float* p, vf v, int n) { _mm256_maskstore_ps(p, vmask(n), v); }
IRF_INLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
IRF_INLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
IRF_INLINE vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
IRF_INLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
IRF_INLINE vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
IRF_INLINE vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
IRF_INLINE vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
IRF_INLINE float vreduce_add(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
IRF_INLINE float vreduce_max(vf v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// exp(x): see the AVX-512 version (same algorithm and error bound).
IRF_INLINE vf vexp(vf x) {
  const vf hi = vset1(88.7228f), lo = vset1(-87.33654f);
  const vf under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  const vf over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  x = vmin(hi, vmax(lo, x));   // operand order keeps NaN (max/min return the 2nd on NaN)
  const vf n = _mm256_round_ps(vmul(x, vset1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = vfma(n, vset1(-0.693359375f), x);
  r = vfma(n, vset1(2.12194440e-4f), r);
  vf p = vset1(1.9875691500e-4f);
  p = vfma(p, r, vset1(1.3981999507e-3f));
  p = vfma(p, r, vset1(8.3334519073e-3f));
  p = vfma(p, r, vset1(4.1665795894e-2f));
  p = vfma(p, r, vset1(1.6666665459e-1f));
  p = vfma(p, r, vset1(5.0000001201e-1f));
  p = vfma(vmul(p, r), r, vadd(r, vset1(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  vf y = vmul(vadd(p, p), _mm256_castsi256_ps(e));   // 2p * 2^(n-1): n may be 128
  y = _mm256_andnot_ps(under, y);
  return _mm256_blendv_ps(y, vset1(__builtin_inff()), over);
}
// Sign and select helpers: see the AVX-512 versions.
IRF_INLINE vf vabs(vf v) { return _mm256_andnot_ps(vset1(-0.f), v); }
IRF_INLINE vf vcopysign(vf m, vf s) {
  return _mm256_or_ps(_mm256_andnot_ps(vset1(-0.f), m), _mm256_and_ps(vset1(-0.f), s));
}
IRF_INLINE vf vselect_lt(vf a, vf b, vf x, vf y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
#else
// Generic x86-64: GCC vector extensions, lowered to SSE2.
typedef float vf __attribute__((vector_size(16), aligned(16)));
constexpr int W = 4;
IRF_INLINE vf vzero() { return vf{0.f, 0.f, 0.f, 0.f}; }
IRF_INLINE vf vset1(float x) { return vf{x, x, x, x}; }
IRF_INLINE vf vload(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
IRF_INLINE void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
IRF_INLINE vf vload_part(const float* p, int n) {
  vf v = vzero();
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
IRF_INLINE void vstore_part(float* p, vf v, int n) { for (int i = 0; i < n; ++i) p[i] = v[i]; }
IRF_INLINE vf vfma(vf a, vf b, vf c) { return a * b + c; }
IRF_INLINE vf vadd(vf a, vf b) { return a + b; }
IRF_INLINE vf vsub(vf a, vf b) { return a - b; }
IRF_INLINE vf vmul(vf a, vf b) { return a * b; }
IRF_INLINE vf vdiv(vf a, vf b) { return a / b; }
IRF_INLINE vf vmax(vf a, vf b) { return (vf)_mm_max_ps((__m128)a, (__m128)b); }
IRF_INLINE vf vmin(vf a, vf b) { return (vf)_mm_min_ps((__m128)a, (__m128)b); }
IRF_INLINE float vreduce_add(vf v) { return (v[0] + v[2]) + (v[1] + v[3]); }
IRF_INLINE float vreduce_max(vf v) {
  float a = v[0] > v[1] ? v[0] : v[1], b = v[2] > v[3] ? v[2] : v[3];
  return a > b ? a : b;
}
// exp(x): see the AVX-512 version (same algorithm and error bound), one lane at a time for
// the range reduction so it stays in baseline SSE2.
IRF_INLINE vf vexp(vf x) {
  vf y;
  for (int i = 0; i < W; ++i) {
    float xi = x[i];
    if (xi < -87.33654f) { y[i] = 0.f; continue; }
    if (xi > 88.7228f) { y[i] = __builtin_inff(); continue; }
    const float n = __builtin_nearbyintf(xi * 1.44269504088896341f);
    float r = xi - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + (r + 1.f);
    int e = (int(n) + 126) << 23;   // 2p * 2^(n-1): n may be 128
    float scale;
    std::memcpy(&scale, &e, sizeof scale);
    y[i] = (p + p) * scale;
  }
  return y;
}
// Sign and select helpers: see the AVX-512 versions (SSE2 bit operations).
IRF_INLINE vf vabs(vf v) { return (vf)_mm_andnot_ps(_mm_set1_ps(-0.f), (__m128)v); }
IRF_INLINE vf vcopysign(vf m, vf s) {
  const __m128 sign = _mm_set1_ps(-0.f);
  return (vf)_mm_or_ps(_mm_andnot_ps(sign, (__m128)m), _mm_and_ps(sign, (__m128)s));
}
IRF_INLINE vf vselect_lt(vf a, vf b, vf x, vf y) {
  const __m128 m = _mm_cmplt_ps((__m128)a, (__m128)b);
  return (vf)_mm_or_ps(_mm_and_ps(m, (__m128)x), _mm_andnot_ps(m, (__m128)y));
}
#endif

// ---- transcendentals built on the vocabulary above (same code for every ISA) ----

// tanh(x).  |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf polynomial); otherwise
// 1 - 2 / (exp(2|x|) + 1) with the sign of x (exp overflow to +inf gives exactly +-1).
// Measured max error (float64 reference, 1.4e7 points in [-12, 12] plus +-[1e-30, 10] log-spaced,
// every ISA): 8.1e-8 absolute, 1.45e-7 relative (at |x| ~ 0.63); tests/test_simd_math.py asserts
// <= 1e-7 absolute and <= 2e-7 relative.  NaN gives NaN, +-inf gives +-1.
IRF_INLINE vf vtanh(vf x) {
  const vf ax = vabs(x);
  const vf z = vmul(ax, ax);
  vf p = vset1(-5.70498872745e-3f);
  p = vfma(p, z, vset1(2.06390887954e-2f));
  p = vfma(p, z, vset1(-5.37397155531e-2f));
  p = vfma(p, z, vset1(1.33314422036e-1f));
  p = vfma(p, z, vset1(-3.33332819422e-1f));
  const vf small = vfma(vmul(ax, z), p, ax);
  const vf e = vexp(vadd(ax, ax));
  const vf large = vsub(vset1(1.f), vdiv(vset1(2.f), vadd(e, vset1(1.f))));
  return vcopysign(vselect_lt(ax, vset1(0.625f), small, large), x);
}

// erf(a) for a = |x| >= 0 given e = exp(-a^2) (callers that also need exp(-x^2), such as the
// GELU backward, compute it once); the same approximation and error bound as verf below.  e is
// not clamped: past a = 3.95, e R(1/3.95) < 2e-8 rounds 1 - e R to exactly 1.
IRF_INLINE vf verf_abs_with_exp(vf a, vf e) {
  const vf z = vmul(a, a);
  vf p = vset1(-6.254293257e-04f);
  p = vfma(p, z, vset1(5.042351317e-03f));
  p = vfma(p, z, vset1(-2.679867297e-02f));
  p = vfma(p, z, vset1(1.128267050e-01f));
  p = vfma(p, z, vset1(-3.761257529e-01f));
  p = vfma(p, z, vset1(1.128379107e+00f));
  const vf small = vmul(a, p);
  const vf t = vmin(vset1(3.95f), vmax(vset1(0.875f), a));   // operand order keeps NaN
  const vf u = vdiv(vset1(1.f), t);
  vf r = vset1(-1.336100977e-02f);
  r = vfma(r, u, vset1(9.502206743e-02f));
  r = vfma(r, u, vset1(-2.926285863e-01f));
  r = vfma(r, u, vset1(4.953553677e-01f));
  r = vfma(r, u, vset1(-4.442238808e-01f));
  r = vfma(r, u, vset1(2.323407121e-02f));
  r = vfma(r, u, vset1(5.645314455e-01f));
  r = vfma(r, u, vset1(-3.459086292e-04f));
  const vf large = vfma(vsub(vzero(), e), r, vset1(1.f));
  return vselect_lt(a, vset1(0.875f), small, large);
}

// erf(x).  |x| < 0.875: x P(x^2), P of degree 5; otherwise 1 - exp(-x^2) R(1/|x|), R of
// degree 7 (erfcx), with |x| clamped to 3.95 where erf rounds to 1 in float32; sign of x.
// Coefficients: our own Chebyshev-node least-squares fits (float64, rounded to float32).
// Measured max error (same grid): 1.25e-7 absolute (about 2 ulp, at |x| ~ 0.873), 1.8e-7 relative;
// tests/test_simd_math.py asserts <= 1.5e-7 absolute and <= 2.5e-7 relative.  NaN gives NaN,
// +-inf gives +-1.
IRF_INLINE vf verf(vf x) {
  const vf ax = vabs(x);
  return vcopysign(verf_abs_with_exp(ax, vexp(vmul(vsub(vzero(), ax), ax))), x);
}

// Correctly rounded square root.
IRF_INLINE vf vsqrt(vf x) {
#if defined(__AVX512F__)
  return _mm512_sqrt_ps(x);
#elif defined(__AVX2__)
  return _mm256_sqrt_ps(x);
#else
  return (vf)_mm_sqrt_ps((__m128)x);
#endif
}

// Rows of a register-blocked tile of MR rows x 2 vectors (gemm, attention): 2*MR accumulators
// + 2 loaded vectors + 1 broadcast fit the register file (16 ymm on AVX2, 32 zmm on AVX-512,
// 16 xmm on SSE2).
#if defined(__AVX512F__)
constexpr int kTileRows = 12;
#elif defined(__AVX2__)
constexpr int kTileRows = 6;
#else
constexpr int kTileRows = 4;
#endif

// Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) in this thread.
// Called at the top of every parallel region: one denormal can make a step 5x slower.
IRF_INLINE void flush_denormals() { _mm_setcsr(_mm_getcsr() | 0x8040u); }

IRF_INLINE i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
IRF_INLINE i64 round_up(i64 a, i64 b) { return ceil_div(a, b) * b; }

// OpenMP helpers that degrade to one thread when OpenMP is absent.  Kernels split work by
// (tid, nth) by hand rather than with nested `omp for`, so the same helper runs inside a team
// (nth > 1, barriers) or alone inside another thread's task (nth == 1, no barriers).
IRF_INLINE int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
IRF_INLINE int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}
IRF_INLINE void team_barrier(int nth) {
#ifdef _OPENMP
  if (nth > 1) {
#pragma omp barrier
  }
#else
  (void)nth;
#endif
}
// Half-open range [lo, hi) of n items that thread tid of nth owns (contiguous, balanced).
IRF_INLINE void split_range(i64 n, int tid, int nth, i64& lo, i64& hi) {
  lo = n * tid / nth;
  hi = n * (tid + 1) / nth;
}

}  // namespace IRF_ISA
}  // namespace irf
