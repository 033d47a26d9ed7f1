// simd.h: one small vector vocabulary per ISA.  Included only by csrc/kernels/*.cpp, which
// are compiled once per ISA with IRF_ISA defined to generic | avx2 | avx512; everything here
// lives in irf::<isa> so the three copies never meet at link time.
//
//   vf            one vector of W floats
//   vzero/vset1   constants;   vload/vstore unaligned;   vload_part/vstore_part first n < W lanes
//   vfma(a,b,c)   a*b + c (one rounding on AVX2/AVX-512, two on generic)
//   vadd vsub vmul vdiv vmax vmin, vreduce_add / vreduce_max (horizontal)
//   vsqrt         correctly rounded square root;  kTileRows: rows of a register-blocked tile
//   vabs vcopysign vselect_lt   sign and per-lane select helpers;  vshl23 bits << 23
//   vexp vtanh verf   exp, tanh and erf (shared code for every ISA; measured error bounds at each)
#pragma once
#include <cstdint>
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
// The float whose bits are those of v shifted left by 23 (vexp builds 2^n with it).
IRF_INLINE vf vshl23(vf v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(v), 23)); }
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
IRF_INLINE vf vshl23(vf v) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(v), 23)); }
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
IRF_INLINE vf vshl23(vf v) { return (vf)_mm_slli_epi32((__m128i)v, 23); }
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

// Non-temporal (streaming) store of one vector to a W*4-byte aligned address: skips the
// read-for-ownership of the destination line and does not keep it in cache.  Kernels that use
// it end with _mm_sfence() before anything reads what they streamed.
IRF_INLINE void vstream(float* p, vf v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, v);
#elif defined(__AVX2__)
  _mm256_stream_ps(p, v);
#else
  _mm_stream_ps(p, (__m128)v);
#endif
}

// Outputs of at least kStreamMinFloats floats (4 MiB, 8x a core's L2) are written with
// streaming stores by the memory-bound row / elementwise kernels (layernorm, the softmax
// backward, activations; not the softmax / log-softmax forward, whose backward reads its
// output, see softmax.cpp): such an output does not stay in L2 for its consumer, and skipping the
// read-for-ownership of every line saves a third of a read-one-write-one kernel's traffic.
// stream_ok: that size and a vector-aligned destination (outputs the bindings allocate are
// 64-byte aligned; a caller's out= array may not be, and is then written normally), written in
// rows of `row` floats that each start vector-aligned (row a multiple of W).
// With several threads the AVX-512 build streams only outputs of 16 MiB or more (half a 32 MiB
// L3): on an AVX-512 Zen 5, 2 threads, 6 MB outputs (2048x768) were faster with plain stores
// (A/B in both orders: GELU erf forward +27%, softmax fwd+bwd +7-19%, log-softmax +28-64%,
// layernorm backward +20-29% in three of four batches; layernorm forward +3..+70% in two, -4..-7%
// in two) while 25 MB ones (GELU at the MLP width) stayed 1-12% faster streamed.  With one
// thread, and in the AVX2 build (measured on Zen 3, where streaming won at 2 threads too), the
// 4 MiB threshold applies.  Those backward figures were for a backward alone, writing into a
// just-freed cached buffer; layernorm's backward, timed after its forward, is faster streamed
// and passes nthreads = 1 here (see layernorm.cpp).
constexpr i64 kStreamMinFloats = i64(1) << 20;
constexpr i64 kStreamMinFloatsThreads = W >= 16 ? i64(1) << 22 : kStreamMinFloats;
IRF_INLINE bool stream_ok(const float* p, i64 n, i64 row, int nthreads) {
  return n >= (nthreads > 1 ? kStreamMinFloatsThreads : kStreamMinFloats) && row % W == 0 &&
         reinterpret_cast<std::uintptr_t>(p) % (W * sizeof(float)) == 0;
}
// vstore, or vstream when NT
template <bool NT>
IRF_INLINE void vput(float* p, vf v) {
  if (NT) vstream(p, v);
  else vstore(p, v);
}

// ---- transcendentals built on the vocabulary above (same code for every ISA) ----

// exp(x) = 2^n exp(r), n = round(x log2 e), r = x - n ln 2 (two-part ln 2, |r| <= ln2/2).
// n comes from one FMA against a magic constant: j = x log2e + (1.5 * 2^23 + 126) rounds
// x log2 e to the nearest integer in j's low mantissa bits, so j's bits << 23 are the float
// 2^(n-1) (no round / convert instructions; n = 128 at the top of the range stays finite).
// exp(r) = 1 + r + r^2 q(r), q of degree 4 (our own fit, relative error 3e-9 on [-ln2/2, ln2/2]),
// evaluated with every coefficient doubled to absorb the 2^(n-1).  Measured max relative error
// (float64 reference, tests/test_simd_math.py grid): 7.5e-8 (9.3e-8 on generic); the test asserts 2e-7.
// x < -86.99 may give 0 (results below ~2^-125 flush), -inf gives 0, x > 88.72 gives +inf,
// NaN gives NaN.  ~25% faster than the Cephes-style version with round/convert it replaced.
constexpr float kExpHi = 88.7228f, kExpLo = -87.33654f, kLog2e = 1.44269504088896341f;
constexpr float kExpMagic = 12582912.f + 126.f;
constexpr float kLn2Hi = -0.693359375f, kLn2Lo = 2.12194440e-4f;   // -ln 2 = kLn2Hi + kLn2Lo
// exp of an already clamped xc in [kExpLo, kExpHi]
IRF_INLINE vf vexp_clamped(vf xc) {
  const vf j = vfma(xc, vset1(kLog2e), vset1(kExpMagic));
  const vf n = vsub(j, vset1(kExpMagic));
  const vf r = vfma(n, vset1(kLn2Lo), vfma(n, vset1(kLn2Hi), xc));
  vf p = vset1(2 * 1.3814604608e-3f);
  p = vfma(p, r, vset1(2 * 8.3687109873e-3f));
  p = vfma(p, r, vset1(2 * 4.1668388993e-2f));
  p = vfma(p, r, vset1(2 * 1.6666521132e-1f));
  p = vfma(p, r, vset1(2 * 4.9999994040e-1f));
  p = vfma(p, r, vset1(2.f));
  p = vfma(p, r, vset1(2.f));
  return vmul(p, vshl23(j));
}
IRF_INLINE vf vexp(vf x) {
  const vf xc = vmin(vset1(kExpHi), vmax(vset1(kExpLo), x));   // operand order keeps NaN
  return vselect_lt(vset1(kExpHi), x, vset1(__builtin_inff()), vexp_clamped(xc));
}
// exp(x) where x cannot overflow (max-shifted softmax and attention scores, log-probabilities,
// all <= 0 up to rounding): vexp without the overflow clamp and the +inf select (3 of its ~16
// instructions).  The same value as vexp for every x <= kExpHi, -inf and NaN; garbage above.
IRF_INLINE vf vexp_nonpos(vf x) { return vexp_clamped(vmax(vset1(kExpLo), x)); }   // keeps NaN

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

// a P(a^2) / Q(a^2), P and Q evaluated by Horner from their highest-degree coefficient
// (verf below; the GELU-erf derivative in kernels/activations.cpp).
template <int NP, int NQ>
IRF_INLINE vf vodd_rational(vf a, const float (&pc)[NP], const float (&qc)[NQ]) {
  const vf z = vmul(a, a);
  vf p = vset1(pc[0]), q = vset1(qc[0]);
  for (int i = 1; i < NP; ++i) p = vfma(p, z, vset1(pc[i]));
  for (int i = 1; i < NQ; ++i) q = vfma(q, z, vset1(qc[i]));
  return vdiv(vmul(a, p), q);
}

// erf(x) = x P(x^2) / Q(x^2) for |x| <= 3.9 (P, Q of degree 5: our own float64 rational fit on
// [0, 3.92], max error 1.6e-8 before float32 rounding), +-1 beyond, where erf rounds to 1 in
// float32.  One division and no exp: ~3x faster than the exp-based erfc form it replaced, at the
// cost of float32 rounding in P and Q near 1.  Measured max error (float64 reference): 3.5e-7
// absolute and relative (~3 ulp of 1) with FMA (avx2, avx512), 4.3e-7 on generic (two roundings
// per vfma); tests/test_simd_math.py asserts 4.5e-7 absolute and relative.
// (PyTorch's float32 GELU itself is off by up to 3.8e-7.)  NaN gives NaN, +-inf gives +-1.
constexpr float kErfP[] = {2.034504405e-06f, 2.874384227e-04f, 3.867659485e-03f, 5.305842310e-02f,
                           1.927520484e-01f, 1.128378987e+00f};
constexpr float kErfQ[] = {3.806606765e-05f, 1.187902642e-03f, 1.517101284e-02f, 1.150792167e-01f,
                           5.041537285e-01f, 1.f};
IRF_INLINE vf verf(vf x) {
  const vf ax = vabs(x), a = vmin(vset1(3.92f), ax);   // operand order keeps NaN
  const vf y = vselect_lt(vset1(3.9f), ax, vset1(1.f), vodd_rational(a, kErfP, kErfQ));   // erf(3.9) = 1 - 3.5e-8
  return vcopysign(y, x);
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

// Floats in one 64-byte cache line (the step of one software prefetch).
constexpr int kLineFloats = 16;

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
// The first statement of every parallel region (state: team_before() of its caller).
IRF_INLINE void enter_region(TeamState* state) {
  flush_denormals();
  team_note(state, thread_id());
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
// Runs f(tid, team) on every member of an OpenMP team of nth threads (denormals flushed in
// each); with nth == 1 (or no OpenMP) calls f(0, 1) on the calling thread.
template <class F>
void run_team(int nth, F&& f) {
#ifdef _OPENMP
  if (nth > 1) {
    TeamState* const placement = team_before(nth);
#pragma omp parallel num_threads(nth)
    {
      enter_region(placement);
      f(thread_id(), team_size());
    }
    return;
  }
#else
  (void)nth;
#endif
  f(0, 1);
}
// Half-open range [lo, hi) of n items that thread tid of nth owns (contiguous, balanced).
IRF_INLINE void split_range(i64 n, int tid, int nth, i64& lo, i64& hi) {
  lo = n * tid / nth;
  hi = n * (tid + 1) / nth;
}

}  // namespace IRF_ISA
}  // namespace irf
