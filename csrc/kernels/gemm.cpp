// gemm.cpp: single-precision matrix multiply, compiled once per ISA.
//
//   C[b] (M x N) = op(A[b]) (M x K) @ op(B[b]) (K x N)   (+ C[b] if accumulate) (+ bias[N])
//
// Design (Goto / BLIS): for each NC-wide column block of B and KC-deep slice of K, B is packed
// into NR-wide k-major micro-panels shared by the team; each thread packs an MC x KC block of A
// into MR-tall k-major micro-panels of its own and runs the MR x NR register-blocked
// micro-kernel over it.  Transposes and arbitrary numpy strides are absorbed by the packing,
// so A^T B and A B^T run at the speed of A B.  Matrix-vector products (M == 1 or N == 1) skip
// packing: they are memory bound and stream the matrix once.  Small products (every dimension
// <= 128) skip packing A, whose cost there is comparable to the arithmetic (gemm_small; on
// AVX-512 in 6 x 64 tiles where B is row-major and 64+ wide, gemm_small_wide); so do
// products of 2..8 columns (gemm_skinny: dot products of A rows with B columns; with A^T,
// gemm_skinny_t: C's columns accumulated along A^T's contiguous rows), of 2..8 rows with B^T
// (gemm_skinny_m), and, on AVX-512, products with a narrow column block (A read in place by the
// micro-kernel, row-major or A^T, see gemm_one).  Edge tiles run micro-kernels of 6-12 rows
// and one or two vectors wide, whichever covers them; 1-4 columns past a last full vector run
// apart on the skinny / matrix-vector kernels (split_tail).  At 2-4 threads a blocked product is
// split into independent row (or column) parts, one per thread, each packing its own B (or A)
// (private_split); others share each packed B slice as a team.
#include <type_traits>

#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

// Register tile: MR = kTileRows rows (simd.h) x NR = 2 vectors.
constexpr int MR = kTileRows;
constexpr int NR = 2 * W;
// Cache blocking: an MR x KC A micro-panel plus a KC x NR B micro-panel stay in L1 (32 KiB),
// the MC x KC A block (384 KiB) in L2; B is packed one KC x NC slice at a time into two
// alternating buffers (see gemm_one).  Each B micro-panel comes from L3 once per MC rows:
// MC = 384 rather than 144 (BLIS's Haswell value) measured 1-2% faster on 2048x768x768 and
// 3-6% on 2048x768x3072 and 768x768x2048 (A^T) at 1 thread on Zen 3 (512 KiB L2), neutral to
// +3% at 2 threads.
constexpr i64 KC = 256;
constexpr i64 MC = 384;    // multiple of MR for every ISA above (6, 12, 4)
constexpr i64 NC = 4064;   // multiple of NR (16, 32, 8)
// Row blocks at 2+ threads start at multiples of kRowGrain rows: half a panel where a half
// tile (micro_kernel<MR / 2>) still has enough accumulators to hide the FMA latency.
constexpr i64 kRowGrain = MR >= 12 ? MR / 2 : MR;

// ---------------------------------------------------------------------------------------
// Packing.  A block (mc x kc) -> micro-panels of MR rows: panel p holds, for k = 0..kc-1,
// the MR values A(p*MR + r, k), zero-padded past mc.  B block (kc x nc) -> micro-panels of NR
// columns: panel q holds, for each k, the NR values B(k, q*NR + j), zero-padded past nc.

#if defined(__AVX2__)
// 8x8 transpose in registers: c[j] lane i = r[i] lane j.
IRF_INLINE void transpose8(const __m256 (&r)[8], __m256 (&c)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  c[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  c[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  c[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  c[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  c[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  c[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  c[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  c[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

// One k of a full A panel in A^T storage (row stride 1): the MR contiguous values s[0:MR]
// to d[0:MR] (4 + 2 / 8 + 4 floats with AVX2: GCC's own code inserted the 6 one by one).
IRF_INLINE void copy_a_t_k(float* __restrict d, const float* s) {
#if defined(__AVX2__)
  if constexpr (MR == 6) {
    _mm_storeu_ps(d, _mm_loadu_ps(s));
    _mm_store_sd(reinterpret_cast<double*>(d + 4), _mm_load_sd(reinterpret_cast<const double*>(s + 4)));
    return;
  }
  if constexpr (MR == 12) {
    _mm256_storeu_ps(d, _mm256_loadu_ps(s));
    _mm_storeu_ps(d + 8, _mm_loadu_ps(s + 8));
    return;
  }
#endif
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) d[r] = s[r];
}

// A^T storage (row stride 1), G full panels at once, k by k: the G * MR values of one k are
// one contiguous run (3 whole cache lines for G = 4, MR = 12), so each source line is read once,
// where one panel at a time reads MR values (48 bytes) per k and the next panel, 256 rows
// later, comes back for the rest of the line.  G = 4 measured best (2: -0.2%, 8: -2.3%): the G
// destination streams lie MR * kc floats apart, i.e. in the same L1 set for kc = 256 (12 KiB).
// 768x3072x2048 A^T B, A/B over 6 rounds: +3.9% at 1 thread, +1.9% at 2 (Zen 5).
template <int G>
void pack_a_panels_t(float* __restrict dst, const float* a, i64 cs, i64 kc) {
  for (i64 k = 0; k < kc; ++k) {
    const float* s = a + k * cs;
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) copy_a_t_k(dst + g * MR * kc + k * MR, s + g * MR);
  }
}

void pack_a_panel(float* __restrict dst, const float* a, i64 rs, i64 cs, i64 mr, i64 kc) {
  if (mr == MR && rs == 1) {              // A^T storage: the MR values of one k are contiguous
    pack_a_panels_t<1>(dst, a, cs, kc);
    return;
  }
#if defined(__AVX2__)
  if constexpr (MR == 6 || MR == 12) {
    if (mr == MR && cs == 1) {            // row-major A, full panel: 8 k at a time, rows 0..7 by an
      constexpr int R8 = MR < 8 ? MR : 8; // 8x8 register transpose (MR = 6: 2 zero rows), rows
      i64 k = 0;                          // 8..11 (MR = 12) by a 4x8 one
      for (; k + 8 <= kc; k += 8) {
        __m256 r[8], c[8];
        for (int i = 0; i < 8; ++i) r[i] = i < R8 ? _mm256_loadu_ps(a + i * rs + k) : _mm256_setzero_ps();
        transpose8(r, c);
        float* d = dst + k * MR;
        if constexpr (MR == 6) {
          // column k+j = rows 0..5 (lanes 6, 7 zero); each 8-wide store's last two lanes are
          // overwritten by the next, the last column is stored as 4 + 2.
          for (int j = 0; j < 7; ++j) _mm256_storeu_ps(d + j * MR, c[j]);
          _mm_storeu_ps(d + 7 * MR, _mm256_castps256_ps128(c[7]));
          _mm_storel_pi(reinterpret_cast<__m64*>(d + 7 * MR + 4), _mm256_extractf128_ps(c[7], 1));
        } else {
          const __m256 r8 = _mm256_loadu_ps(a + 8 * rs + k), r9 = _mm256_loadu_ps(a + 9 * rs + k);
          const __m256 r10 = _mm256_loadu_ps(a + 10 * rs + k), r11 = _mm256_loadu_ps(a + 11 * rs + k);
          const __m256 t0 = _mm256_unpacklo_ps(r8, r9), t1 = _mm256_unpackhi_ps(r8, r9);
          const __m256 t2 = _mm256_unpacklo_ps(r10, r11), t3 = _mm256_unpackhi_ps(r10, r11);
          // u[j] = rows 8..11 at k+j (low half) and at k+j+4 (high half)
          const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                               _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
          for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + j * MR, c[j]);
          for (int j = 0; j < 4; ++j) {
            _mm_storeu_ps(d + j * MR + 8, _mm256_castps256_ps128(u[j]));
            _mm_storeu_ps(d + (j + 4) * MR + 8, _mm256_extractf128_ps(u[j], 1));
          }
        }
      }
      for (; k < kc; ++k)
        for (int r = 0; r < MR; ++r) dst[k * MR + r] = a[r * rs + k];
      return;
    }
  }
#endif
  if (cs == 1) {                          // row-major A: each row is a contiguous k-run
    for (i64 r = 0; r < mr; ++r) {
      const float* s = a + r * rs;
      for (i64 k = 0; k < kc; ++k) dst[k * MR + r] = s[k];
    }
  } else {
    for (i64 r = 0; r < mr; ++r)
      for (i64 k = 0; k < kc; ++k) dst[k * MR + r] = a[r * rs + k * cs];
  }
  for (i64 r = mr; r < MR; ++r)
    for (i64 k = 0; k < kc; ++k) dst[k * MR + r] = 0.f;
}

void pack_b_panel(float* __restrict dst, const float* b, i64 rs, i64 cs, i64 nr, i64 kc) {
  if (nr == NR && cs == 1) {              // row-major B: NR contiguous values per k
    for (i64 k = 0; k < kc; ++k) {
      const float* s = b + k * rs;
      vstore(dst + k * NR, vload(s));
      vstore(dst + k * NR + W, vload(s + W));
    }
    return;
  }
#if defined(__AVX2__)
  if (rs == 1 && nr == NR) {              // B^T storage, full panel: 8x8 register transposes
    i64 k = 0;
    for (; k + 8 <= kc; k += 8)
      for (int jg = 0; jg < NR; jg += 8) {
        __m256 r[8], c[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(b + (jg + j) * cs + k);   // column jg+j, k..k+7
        transpose8(r, c);
        float* d = dst + k * NR + jg;                                                  // row k, cols jg..jg+7
        for (int i = 0; i < 8; ++i) _mm256_storeu_ps(d + i * NR, c[i]);
      }
    for (; k < kc; ++k)
      for (int j = 0; j < NR; ++j) dst[k * NR + j] = b[k + j * cs];
    return;
  }
#endif
  if (rs == 1) {                          // B^T storage: each column is a contiguous k-run
    for (i64 j = 0; j < nr; ++j) {
      const float* s = b + j * cs;
      for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = s[k];
    }
  } else {
    for (i64 j = 0; j < nr; ++j)
      for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = b[k * rs + j * cs];
  }
  for (i64 j = nr; j < NR; ++j)
    for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = 0.f;
}

// ---------------------------------------------------------------------------------------
// Micro-kernel: acc (ROWS x NV*W) = sum_k Ap[k, 0:ROWS]^T Bp[k, 0:NV*W] (Ap advancing MR floats
// per k in a packed panel: ROWS < MR reads part of it; other A modes below), then
// C[0:mr, 0:nr] = (load_c ? C : 0) + acc (+ bias[0:nr] when bias != nullptr).
// A modes: kPacked (panel k-stride MR), kRowsInPlace (row-major A, row r at ap + r * lda),
// kColsInPlace (A^T storage: the ROWS values of one k contiguous, k-stride lda; full tiles only).
enum AMode : int { kPacked = 0, kRowsInPlace = 1, kColsInPlace = 2 };
template <int ROWS, int AM = kPacked, int NV = 2>
void micro_kernel(i64 kc, const float* __restrict ap, const float* __restrict bp, float* c,
                  i64 ldc, int mr, int nr, bool load_c, const float* bias, i64 lda = 0) {
  vf acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    acc0[r] = vzero();
    acc1[r] = vzero();
  }
  const float* arow[ROWS];
  if constexpr (AM == kRowsInPlace) {
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) arow[r] = ap + (r < mr ? r : 0) * lda;
  }
  const i64 aks = AM == kColsInPlace ? lda : MR;
  i64 ka = 0;
  auto step = [&]() __attribute__((always_inline)) {
    const vf b0 = vload(bp), b1 = NV == 2 ? vload(bp + W) : vzero();
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const vf a = AM == kRowsInPlace ? vset1(arow[r][ka]) : vset1(ap[r]);
      acc0[r] = vfma(a, b0, acc0[r]);
      if (NV == 2) acc1[r] = vfma(a, b1, acc1[r]);
    }
    if (AM == kRowsInPlace) ++ka;
    else ap += aks;
    bp += NR;
  };
  // The C tile is needed after the k loop: start its (likely L3) loads now, one row per k step
  // (3 lines: C rows are rarely 64-byte aligned) rather than all 3*MR lines in one burst.
  const i64 kp = kc < ROWS ? kc : ROWS;
  i64 k = 0;
#pragma GCC unroll 1
  for (; k < kp; ++k) {
    const float* cr = c + k * ldc;
    __builtin_prefetch(cr, 1, 3);
    __builtin_prefetch(cr + NV * W - 1, 1, 3);
    if (NV == 2) __builtin_prefetch(cr + W, 1, 3);
    step();
  }
#pragma GCC unroll 2
  for (; k < kc; ++k) step();
  if (NV == 2 && mr == ROWS && nr == NR) {
    vf bias0 = vzero(), bias1 = vzero();
    if (bias) { bias0 = vload(bias); bias1 = vload(bias + W); }
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      float* cr = c + r * ldc;
      vf v0 = vadd(acc0[r], bias0), v1 = vadd(acc1[r], bias1);
      if (load_c) { v0 = vadd(v0, vload(cr)); v1 = vadd(v1, vload(cr + W)); }
      vstore(cr, v0);
      vstore(cr + W, v1);
    }
    return;
  }
  // Edge tile: rows below mr, n0 + n1 = nr lanes, with partial (masked) loads and stores,
  // the same additions in the same order as the full tile.  The row loop is unrolled so that
  // every access to acc0 / acc1 has a constant index (as a loop, GCC kept the arrays in memory
  // and stored all 2 * MR accumulators to the stack after the k loop of every call, full tiles
  // too).  It replaced a scalar copy through a stack tile, which for small K cost more than the
  // k loop: A/B at 1 thread (Zen 5) 3690x30x13 with B^T (every tile 30 wide) +24%, 1000x100x50
  // +1.2%, wide products neutral.
  const int n0 = nr < W ? nr : W, n1 = NV == 2 ? nr - n0 : 0;
  auto ld = [](const float* q, int n) { return n == W ? vload(q) : vload_part(q, n); };
  auto st = [](float* q, vf v, int n) {
    if (n == W) vstore(q, v);
    else vstore_part(q, v, n);
  };
  vf bias0 = vzero(), bias1 = vzero();
  if (bias) {
    bias0 = ld(bias, n0);
    if (n1 > 0) bias1 = ld(bias + W, n1);
  }
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    if (r < mr) {
      float* cr = c + r * ldc;
      vf v0 = vadd(acc0[r], bias0);
      if (load_c) v0 = vadd(v0, ld(cr, n0));
      st(cr, v0, n0);
      if (n1 > 0) {
        vf v1 = vadd(acc1[r], bias1);
        if (load_c) v1 = vadd(v1, ld(cr + W, n1));
        st(cr + W, v1, n1);
      }
    }
  }
}

// A tile of mr <= MR rows: the micro-kernel with the fewest rows (in steps of two) that covers
// them, down to 6 rows (so AVX2's 6 and generic's 4 always run whole).  Same sums in the same
// order as the full tile.  A/B at 1 thread on Zen 5 against the 12-row kernel for every edge
// (6-row already for <= 6 rows): 512^3 (8-row edge) +0.8%, 200x512x512 +2.1%, M = 2048 neutral;
// a 4-row kernel for <= 4 rows was 0.7% slower than the 6-row one on 1000^3 (its 8
// accumulators are just the FMAs the latency needs in flight on two pipes).
template <int R, int AM = kPacked, int NV = 2>
void edge_rows(i64 kc, const float* ap, const float* bp, float* c, i64 ldc, int mr, int nr, bool load_c,
               const float* bias, i64 lda) {
  if constexpr (R > 6) {
    if (mr <= R - 2) return edge_rows<R - 2, AM, NV>(kc, ap, bp, c, ldc, mr, nr, load_c, bias, lda);
  }
  micro_kernel<R, AM, NV>(kc, ap, bp, c, ldc, mr, nr, load_c, bias, lda);
}
// A tile of nr <= W columns (the last panel of N = 1000, 200, ...) runs with one B vector (NV = 1)
// instead of two, half the FMAs: A/B at 1 thread on Zen 5, 1000^3 +1.6%, 700x1000x500 +1.3%,
// 2048x1000x768 B^T +1.3%, 500x200x500 +6.6%.
template <int R, int AM = kPacked>
void edge_tile(i64 kc, const float* ap, const float* bp, float* c, i64 ldc, int mr, int nr, bool load_c,
               const float* bias, i64 lda = 0) {
  if (nr <= W) edge_rows<R, AM, 1>(kc, ap, bp, c, ldc, mr, nr, load_c, bias, lda);
  else edge_rows<R, AM, 2>(kc, ap, bp, c, ldc, mr, nr, load_c, bias, lda);
}

// One C tile of mr x nr rows / columns: as two MR/2-row halves when `split` (C rows alias in L1,
// see gemm_one; full tiles only), else the micro-kernel that covers it.  A as AM says; `half` is
// the offset of A's row MR/2 from `at` (MR/2 in a packed panel or A^T, MR/2 * lda in row-major A).
template <int AM>
IRF_INLINE void run_tile(i64 kc, const float* at, i64 half, const float* bp, float* ct, i64 ldc, int mr, int nr,
                         bool load_c, const float* bias, i64 lda, bool split) {
  if (split && mr == MR && nr == NR) {
    micro_kernel<MR / 2, AM>(kc, at, bp, ct, ldc, MR / 2, nr, load_c, bias, lda);
    micro_kernel<MR / 2, AM>(kc, at + half, bp, ct + MR / 2 * ldc, ldc, MR / 2, nr, load_c, bias, lda);
  } else {
    edge_tile<MR, AM>(kc, at, bp, ct, ldc, mr, nr, load_c, bias, lda);
  }
}

// Products of at most this K run their tiles in row bands (see band_order in gemm_one).
constexpr i64 kBandMaxK = 32;
// Fused multiply-adds below which one thread is faster than waking a second one.
constexpr double kMinWorkPerThread = 1 << 18;

// ---------------------------------------------------------------------------------------
// Matrix-vector products (M == 1 or N == 1): out[r] = sum_k mat(r, k) x[k] for r < R, with
// mat(r, k) = mat[r*rs + k*cs] (rs == 1 or cs == 1) and x contiguous.  Memory bound: the
// matrix is streamed once, rows handed to threads in chunks of kGemvChunk.
constexpr i64 kGemvChunk = 64;

// Where a finished row goes: out[r*stride] = (acc ? out : 0) + (v + bias[r*bias_stride]).
struct GemvOut {
  float* out;
  i64 stride;
  const float* bias;   // nullptr: none;  bias_stride 0: one value for every row
  i64 bias_stride;
  bool acc;
  IRF_INLINE void put(i64 r, float v) const {
    if (bias) v += bias[r * bias_stride];
    float* o = out + r * stride;
    *o = acc ? *o + v : v;
  }
};

// Dot form (cs == 1): each row is contiguous; rows [r0, r1).
void gemv_dot(const GemvOut& o, const float* mat, i64 rs, const float* x, i64 r0, i64 r1, i64 K) {
  for (i64 r = r0; r < r1; ++r) {
    const float* row = mat + r * rs;
    vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
    i64 k = 0;
    for (; k + 4 * W <= K; k += 4 * W) {
      s0 = vfma(vload(row + k), vload(x + k), s0);
      s1 = vfma(vload(row + k + W), vload(x + k + W), s1);
      s2 = vfma(vload(row + k + 2 * W), vload(x + k + 2 * W), s2);
      s3 = vfma(vload(row + k + 3 * W), vload(x + k + 3 * W), s3);
    }
    for (; k + W <= K; k += W) s0 = vfma(vload(row + k), vload(x + k), s0);
    if (k < K) s1 = vfma(vload_part(row + k, int(K - k)), vload_part(x + k, int(K - k)), s1);
    o.put(r, vreduce_add(vadd(vadd(s0, s1), vadd(s2, s3))));
  }
}

// Whether the axpy form takes eight columns per pass over y instead of four (half the y loads
// and stores per matrix load): for 2048+ outputs.  Decided by the whole product's R, so a
// thread's share of the rows never changes the summation order.  Paired A/B on Zen 4, 1
// thread: 1x3072x768 +5.0% (0.91-0.96 -> 0.98-1.04x numpy), 1x2304x768 +5.7%, 1x50257x768
// (an LM head) +17-20% (0.89 -> 1.05x), 2 threads +5% / +6%; with 768-1024 outputs it lost
// (1x768x768 -1.5%, 1x768x3072 -1%, 1x1024x1024 -11%, 1x300x200 -8%).
IRF_INLINE bool gemv_eight(i64 R) { return R >= 2048; }

// Axpy form (rs == 1): column k of mat is contiguous over r (like a column-major gemv_n).
// For rows [r0, r1) and k in [k0, k1), four (`eight`: eight) columns at a time are streamed
// into an L1-resident chunk y of outputs; emit(rb, y, n) receives each finished chunk (rows rb .. rb+n-1).
// The matrix loads of long chunks are made vector-aligned (numpy's large arrays start 16 bytes
// past a page, and a load that straddles a cache line costs two): a head of fewer than W rows
// runs with partial vectors (masked stores are slow on AMD, so not for short chunks).  y is
// placed half a page away from the matrix rows modulo 4 KiB, which also gives it their
// alignment: a store to y that matches a later matrix load in its low 12 address bits delays
// that load (4K aliasing; 5-10% slower here when y sat just after the rows).
template <class Emit>
void gemv_axpy(const float* mat, i64 cs, const float* x, i64 r0, i64 r1, i64 k0, i64 k1, bool eight, Emit&& emit) {
  constexpr i64 CH = 4096;   // 16 KiB of outputs: whole rows of a GPT-2 sized matrix
  constexpr i64 kPage = 1024;  // floats in 4 KiB
  alignas(64) float ybuf[CH + kPage];
  for (i64 rb = r0; rb < r1; rb += CH) {
    const i64 n = (r1 - rb < CH) ? r1 - rb : CH;
    const i64 m_off = i64(reinterpret_cast<std::uintptr_t>(mat + rb) / sizeof(float)) % kPage;
    const i64 y_off = i64(reinterpret_cast<std::uintptr_t>(ybuf) / sizeof(float)) % kPage;
    float* y = ybuf + ((m_off + kPage / 2 - y_off) % kPage + kPage) % kPage;   // y = mat + rb + 2 KiB (mod 4 KiB)
    const int mis = (n >= 32 * W) ? int(m_off % W) : 0;   // short chunks: not worth two partial vectors
    const int head = mis == 0 ? 0 : W - mis;
    const i64 nv = head + (n - head) / W * W;
    const int tail = int(n - nv);
    for (i64 i = 0; i < n; ++i) y[i] = 0.f;
    i64 k = k0;
    if (eight)
      for (; k + 8 <= k1; k += 8) {
        const float* c0 = mat + rb + k * cs;
        const float *c1 = c0 + cs, *c2 = c1 + cs, *c3 = c2 + cs, *c4 = c3 + cs, *c5 = c4 + cs, *c6 = c5 + cs,
                    *c7 = c6 + cs;
        const vf x0 = vset1(x[k]), x1 = vset1(x[k + 1]), x2 = vset1(x[k + 2]), x3 = vset1(x[k + 3]);
        const vf x4 = vset1(x[k + 4]), x5 = vset1(x[k + 5]), x6 = vset1(x[k + 6]), x7 = vset1(x[k + 7]);
        // y[v : v + n] += the 8 columns' x-weighted values, in two chains of 4 (n = W: whole vectors)
        auto cols8 = [&](i64 v, int n) __attribute__((always_inline)) {
          auto ld = [n](const float* q) { return n == W ? vload(q) : vload_part(q, n); };
          vf acc = vfma(x0, ld(c0 + v), ld(y + v)), acc2 = vmul(x4, ld(c4 + v));
          acc = vfma(x1, ld(c1 + v), acc);
          acc2 = vfma(x5, ld(c5 + v), acc2);
          acc = vfma(x2, ld(c2 + v), acc);
          acc2 = vfma(x6, ld(c6 + v), acc2);
          acc = vfma(x3, ld(c3 + v), acc);
          acc2 = vfma(x7, ld(c7 + v), acc2);
          if (n == W) vstore(y + v, vadd(acc, acc2));
          else vstore_part(y + v, vadd(acc, acc2), n);
        };
        if (head) cols8(0, head);
        for (i64 v = head; v < nv; v += W) cols8(v, W);
        if (tail) cols8(nv, tail);
      }
    for (; k + 4 <= k1; k += 4) {
      const float* c0 = mat + rb + k * cs;
      const float *c1 = c0 + cs, *c2 = c1 + cs, *c3 = c2 + cs;
      const vf x0 = vset1(x[k]), x1 = vset1(x[k + 1]), x2 = vset1(x[k + 2]), x3 = vset1(x[k + 3]);
      if (head) {
        vf acc = vfma(x0, vload_part(c0, head), vload_part(y, head));
        acc = vfma(x1, vload_part(c1, head), acc);
        acc = vfma(x2, vload_part(c2, head), acc);
        vstore_part(y, vfma(x3, vload_part(c3, head), acc), head);
      }
      for (i64 v = head; v < nv; v += W) {
        vf acc = vfma(x0, vload(c0 + v), vload(y + v));
        acc = vfma(x1, vload(c1 + v), acc);
        acc = vfma(x2, vload(c2 + v), acc);
        vstore(y + v, vfma(x3, vload(c3 + v), acc));
      }
      if (tail) {
        vf acc = vfma(x0, vload_part(c0 + nv, tail), vload_part(y + nv, tail));
        acc = vfma(x1, vload_part(c1 + nv, tail), acc);
        acc = vfma(x2, vload_part(c2 + nv, tail), acc);
        vstore_part(y + nv, vfma(x3, vload_part(c3 + nv, tail), acc), tail);
      }
    }
    for (; k < k1; ++k) {
      const float* c0 = mat + rb + k * cs;
      const vf x0 = vset1(x[k]);
      if (head) vstore_part(y, vfma(x0, vload_part(c0, head), vload_part(y, head)), head);
      for (i64 v = head; v < nv; v += W) vstore(y + v, vfma(x0, vload(c0 + v), vload(y + v)));
      if (tail) vstore_part(y + nv, vfma(x0, vload_part(c0 + nv, tail), vload_part(y + nv, tail)), tail);
    }
    emit(rb, static_cast<const float*>(y), n);
  }
}

// Whether an axpy-form product splits K in two halves whose partial sums are added at the
// end: when it is big enough for two threads, which then each stream one contiguous half of
// the matrix (about 12% faster at 2 threads on Zen 3 than each reading half of every row),
// and K is long enough that the partial sums (4 floats of traffic per output) are small
// next to the matrix (K >= 256; at K = 64 the split was 5-7% slower).  Decided by shape
// alone, so the summation order, and the result, never depend on the thread count.
bool gemv_split_k(i64 R, i64 K) { return K >= 256 && double(R) * double(K) >= 2 * kMinWorkPerThread; }

// Skinny products (2 <= N <= kSkinnyN columns, row-major A, not small): the blocked path would
// run each tile at least W columns wide (2x to 8x the FMAs) after packing all of A, which is
// read once anyway.  Instead each output row is N dot products of a contiguous A row with
// the columns of B, R rows at a time (R * N vector accumulators, lane sums reduced at the
// end), streaming A once; B's columns are used in place when contiguous (B^T storage) or
// first copied k-contiguous into each thread's own workspace.  A classifier head (x W^T with
// a few labels) is this shape.  Each output is computed the same way whatever the thread
// count.  A/B on Zen 5 against the blocked path, 1 / 2 threads: 4096x4x4096 2.3x / 2.6x
// (0.86 -> 1.94x numpy at 1 thread), 2048x2x768 B^T 2.7x / 3.4x, 2048x8x768 B^T 1.13x / 2.2x,
// 2048x5x768 2.2x, 1000x3x100 1.8x (0.55 -> 0.97x numpy: at K = 100 the lane sums dominate).
constexpr i64 kSkinnyN = 8;
// The skinny kernels' per-thread copy of B (N x K floats) is capped at this; a product whose
// copy would be larger takes the blocked path (whose buffers are bounded), so that a one-off
// huge-K call does not leave that much workspace allocated in every thread.
constexpr double kSkinnyMaxCopy = double(1 << 22);

// Rows (skinny_n) or row vectors (skinny_t_n) per register block for NN columns: NN times it
// accumulators, 12-18 of the 32 vector registers, the rest for the operands.
constexpr int skinny_block(int nn) { return nn <= 2 ? 6 : nn <= 4 ? 4 : nn <= 6 ? 3 : 2; }

template <int R, int C>
IRF_INLINE void zero_tile(vf (&acc)[R][C]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) acc[r][j] = vzero();
}

// f(std::integral_constant<int, n>{}) for n = 2..kSkinnyN (n above: kSkinnyN).
template <class F>
void with_skinny_n(i64 n, F&& f) {
  switch (n) {
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// out(i, j) = sum_k X[i * ldx + k] Y[j * ys + k] for i < rows, j < NN (+ out if accumulate)
// (+ bias[i * b_is + j * b_js]); out(i, j) at out[i * o_is + j * o_js].
struct SkinnyArgs {
  const float* x; i64 ldx;
  const float* y; i64 ys;
  float* out; i64 o_is, o_js;
  const float* bias; i64 b_is, b_js;
  i64 rows, K;
  bool accumulate;
};

template <int NN, int R>
void skinny_rows(const SkinnyArgs& s, i64 i0) {
  const i64 K = s.K, ldx = s.ldx;
  vf acc[R][NN];
  zero_tile(acc);
  const float* a = s.x + i0 * ldx;
  i64 k = 0;
  for (; k + W <= K; k += W) {
    vf b[NN];
#pragma GCC unroll 8
    for (int j = 0; j < NN; ++j) b[j] = vload(s.y + j * s.ys + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf av = vload(a + r * ldx + k);
#pragma GCC unroll 8
      for (int j = 0; j < NN; ++j) acc[r][j] = vfma(av, b[j], acc[r][j]);
    }
  }
  if (k < K) {
    const int t = int(K - k);
    vf b[NN];
#pragma GCC unroll 8
    for (int j = 0; j < NN; ++j) b[j] = vload_part(s.y + j * s.ys + k, t);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf av = vload_part(a + r * ldx + k, t);
#pragma GCC unroll 8
      for (int j = 0; j < NN; ++j) acc[r][j] = vfma(av, b[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NN; ++j) {
      float v = vreduce_add(acc[r][j]);
      if (s.bias) v += s.bias[(i0 + r) * s.b_is + j * s.b_js];
      float* o = s.out + (i0 + r) * s.o_is + j * s.o_js;
      *o = s.accumulate ? *o + v : v;
    }
}

template <int NN>
void skinny_n(const SkinnyArgs& s, int tid, int nth) {
  constexpr int R = skinny_block(NN);
  i64 lo, hi;
  split_range(ceil_div(s.rows, R), tid, nth, lo, hi);
  for (i64 g = lo; g < hi; ++g) {
    const i64 i0 = g * R;
    if (i0 + R <= s.rows) skinny_rows<NN, R>(s, i0);
    else
      for (i64 i = i0; i < s.rows; ++i) skinny_rows<NN, 1>(s, i);
  }
}

void skinny_dispatch(const SkinnyArgs& s, i64 nn, int tid, int nth) {
  with_skinny_n(nn, [&](auto c) { skinny_n<decltype(c)::value>(s, tid, nth); });
}

// 2..kSkinnyN columns, row-major A: rows of A against B's columns.
void gemm_skinny(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth) {
  const i64 N = p.N, K = p.K;
  const float* bt = B;   // column j of B at bt + j * bts, k contiguous
  i64 bts = p.b_cs;
  if (p.b_rs != 1) {     // not B^T storage: copy the N columns k-contiguous (this thread's own copy)
    float* w = static_cast<float*>(workspace(kWsScratch0, sizeof(float) * N * K));
    for (i64 k = 0; k < K; ++k)
      for (i64 j = 0; j < N; ++j) w[j * K + k] = B[k * p.b_rs + j * p.b_cs];
    bt = w;
    bts = K;
  }
  const SkinnyArgs s{A, p.a_rs, bt, bts, C, p.ldc, 1, p.bias, 0, 1, p.M, K, p.accumulate};
  skinny_dispatch(s, N, tid, nth);
}

// 2..kSkinnyN rows (or up to twice that in chunks, see gemm_one), row-major A and B^T storage
// (x W^T for a few sequences: a batched decoding step): the same kernel with the roles swapped,
// B's rows (contiguous over k) against A's rows, C written transposed.  The weight matrix is
// streamed once.  A/B on Zen 5 against the blocked path (which packed all of B^T for a few
// rows), 1 / 2 threads: 4x768x3072 4.8x / 5.0x, 8x3072x768 2.4x / 2.5x, 2x50257x768 2.7x /
// 2.2x (an LM head for two sequences: 26 GFLOP/s, the weights streamed at ~26 GB/s), 2x768x768
// 3.2x / 3.4x.
void gemm_skinny_m(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth) {
  // more than kSkinnyN rows: passes over B of nearly equal row chunks (each 2..kSkinnyN rows)
  const i64 chunks = ceil_div(p.M, kSkinnyN);
  for (i64 c = 0; c < chunks; ++c) {
    i64 r0, r1;
    split_range(p.M, int(c), int(chunks), r0, r1);
    const SkinnyArgs s{B, p.b_cs, A + r0 * p.a_rs, p.a_rs, C + r0 * p.ldc, 1, p.ldc, p.bias, 1, 0, p.N, p.K,
                       p.accumulate};
    skinny_dispatch(s, r1 - r0, tid, nth);
  }
}

// 2..kSkinnyN columns with A^T storage (A(m, k) = a[m + k * lda], contiguous over m): the
// dot-product form would read A across its rows, so C's columns are accumulated along m
// instead, V vectors of rows x NN columns in registers, one pass over k per block of V * W
// rows, each k adding a row of A^T (V loads) times NN broadcast values of B (copied k-major
// into this thread's workspace).  Rows are split over the team in whole blocks.  A/B on Zen 5
// against the blocked path (A^T read in place), 1 / 2 threads: 196x4x1983 3.5x / 5.9x (0.84 ->
// 2.9x numpy at 1 thread), 3131x2x1544 with B^T 6.2x / 7.3x (0.78 -> 4.8x), 4096x4x4096 1.5x /
// 2.3x, 768x8x768 2.2x / 3.2x, 500x6x3000 with B^T 2.6x / 4.9x.
template <int NN, int V>
void skinny_t_block(const GemmParams& p, const float* A, const float* bk, float* C, i64 m0, int rows) {
  const i64 K = p.K, lda = p.a_cs;
  vf acc[V][NN];
  zero_tile(acc);
  const bool full = rows == V * W;
  for (i64 k = 0; k < K; ++k) {
    const float* ar = A + k * lda + m0;
    vf a[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      const int r = rows - v * W;
      a[v] = full || r >= W ? vload(ar + v * W) : (r > 0 ? vload_part(ar + v * W, r) : vzero());
    }
#pragma GCC unroll 8
    for (int j = 0; j < NN; ++j) {
      const vf b = vset1(bk[k * NN + j]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[v][j] = vfma(a[v], b, acc[v][j]);
    }
  }
  alignas(64) float tile[NN][V * W];
#pragma GCC unroll 8
  for (int j = 0; j < NN; ++j)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) vstore(tile[j] + v * W, acc[v][j]);
  for (int r = 0; r < rows; ++r) {
    float* cr = C + (m0 + r) * p.ldc;
    for (int j = 0; j < NN; ++j) {
      float x = tile[j][r];
      if (p.bias) x += p.bias[j];
      cr[j] = p.accumulate ? cr[j] + x : x;
    }
  }
}

template <int NN>
void skinny_t_n(const GemmParams& p, const float* A, const float* bk, float* C, int tid, int nth) {
  constexpr int V = skinny_block(NN);
  constexpr i64 BR = V * W;
  i64 lo, hi;
  split_range(ceil_div(p.M, BR), tid, nth, lo, hi);
  for (i64 b = lo; b < hi; ++b) {
    const i64 m0 = b * BR;
    skinny_t_block<NN, V>(p, A, bk, C, m0, int(p.M - m0 < BR ? p.M - m0 : BR));
  }
}

void gemm_skinny_t(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth) {
  const i64 N = p.N, K = p.K;
  // k-major (the NN values of one k together), unlike gemm_skinny's k-contiguous columns: the
  // kernel broadcasts NN values per k from one pointer.  Reading B's columns in place or from
  // gemm_skinny's layout instead (NN pointers a column apart) measured 768x8x768 27% slower.
  float* bk = static_cast<float*>(workspace(kWsScratch0, sizeof(float) * N * K));
  for (i64 k = 0; k < K; ++k)
    for (i64 j = 0; j < N; ++j) bk[k * N + j] = B[k * p.b_rs + j * p.b_cs];
  with_skinny_n(N, [&](auto c) { skinny_t_n<decltype(c)::value>(p, A, bk, C, tid, nth); });
}

// Small products (every dimension <= kSmallDim): packing A would cost about as much as the
// arithmetic, so the tile kernel below reads A in place (one broadcast per element, any
// strides) and B rows directly when they are contiguous (b_cs == 1); otherwise B is packed
// once into the NR-wide panels of the blocked path.  Whole K in one pass (up to kSmallMaxK
// here; any K for the products of at most MR rows that gemm_one also sends here).
constexpr i64 kSmallDim = 128;
// M and N <= kSmallDim also go there for K up to kSmallMaxK: the blocked path's KC slices then
// re-load and re-store every C tile K / 256 times and pack all of A for few B panels.  A/B on
// Zen 5 (1 thread): 38x66x505 +28% (0.93 -> 1.19x numpy), 64x64x2048 +30% (0.96 -> 1.24x),
// 128x128x300 A^T B^T +6%; at K = 3000-5000 -3..0% (so not there).
constexpr i64 kSmallMaxK = 2048;
IRF_INLINE bool small_product(i64 M, i64 N, i64 K) {
  return M <= kSmallDim && N <= kSmallDim && K <= kSmallMaxK;
}

// acc (R x NV*W) = sum_k A(r, k) b_k[0 : NV*W], A(r, k) = a[r*a_rs + k*a_cs], b_k = b + k*b_rs;
// then C[0:R, 0:nr] = (load_c ? C : 0) + acc (+ bias[0:nr]).  The last vector covers
// nr - (NV-1)*W lanes (1..W): its loads and stores are partial when that is < W, so nothing
// past column nr of B, bias or C is touched.
template <int R, int NV, bool FULL>
IRF_INLINE void small_k_loop(vf (&acc)[R][NV], i64 K, const float* a, i64 a_rs, i64 a_cs,
                             const float* b, i64 b_rs, int last) {
  for (i64 k = 0; k < K; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = (FULL || v < NV - 1) ? vload(b + v * W) : vload_part(b + v * W, last);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const vf av = vset1(a[r * a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = vfma(av, bv[v], acc[r][v]);
    }
    a += a_cs;
    b += b_rs;
  }
}

template <int R, int NV>
void small_kernel(i64 K, const float* a, i64 a_rs, i64 a_cs, const float* b, i64 b_rs, int nr,
                  float* c, i64 ldc, bool load_c, const float* bias) {
  vf acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = vzero();
  const int last = nr - (NV - 1) * W;
  if (last == W) small_k_loop<R, NV, true>(acc, K, a, a_rs, a_cs, b, b_rs, last);
  else small_k_loop<R, NV, false>(acc, K, a, a_rs, a_cs, b, b_rs, last);
  auto ld = [&](const float* q, int v) { return (v < NV - 1 || last == W) ? vload(q + v * W) : vload_part(q + v * W, last); };
  vf bv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bv[v] = bias ? ld(bias, v) : vzero();
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      vf x = vadd(acc[r][v], bv[v]);
      if (load_c) x = vadd(x, ld(cr, v));
      if (v < NV - 1 || last == W) vstore(cr + v * W, x);
      else vstore_part(cr + v * W, x, last);
    }
  }
}

using SmallKernel = void (*)(i64, const float*, i64, i64, const float*, i64, int, float*, i64, bool, const float*);
template <int R, int NV>
SmallKernel small_kernel_for(int rows) {
  if constexpr (R == 1) return &small_kernel<1, NV>;
  else return rows == R ? &small_kernel<R, NV> : small_kernel_for<R - 1, NV>(rows);
}

// True when K lines read in place, one per row of stride ld floats (a K-row strip of B, or
// A^T's k lines), would not stay in L1 (32 KiB, 8-way, 64 sets): a stride that is a multiple
// of a large power of two maps the K lines to few sets (ld = 128 floats: 8 sets, 64 lines).
// Half the capacity is left to the other operand and C.
bool strip_aliases(i64 ld, i64 K) {
  if (ld < 0) ld = -ld;
  if (ld % kLineFloats != 0) return false;        // rows not line-aligned: lines spread over all sets
  i64 step = (ld / kLineFloats) % 64, g = 64;     // set index advances by `step` (mod 64) per row
  while (step) { const i64 t = g % step; g = step; step = t; }
  return K > 8 * (64 / g) / 2;           // 8 ways x (64 / gcd) sets, half of it
}

// Wide tiles for small products on AVX-512: kWideRows (6) rows x 4 vectors (64 columns), the
// same 24 accumulators as the MR x NR (12 x 32) tile but 6 A broadcasts and 4 B loads per k
// instead of 12 + 2 (10 loads for 24 FMAs, not 14), B rows read in place.  Zen 4 (one 512-bit
// FMA per cycle, 2-cycle AVX-512 loads) ran the 12 x 32 tile at 85-90% of peak on these
// shapes, the wide one at 93-99%.  For row-major B (gemm_small packs B^T into NR panels) of
// 64+ columns, every dimension <= kSmallDim or (wider B) M <= kSmallDim with K <= kWideMaxK
// (a 64-column strip of B, 192 KiB, stays in L2 while every row panel reads it), an A^T whose
// K lines alias only with wider B (below); with M <= MR only when
// 6 divides M (8 rows as 6 + 2 was 20% slower than one 8-row tile).  A/B on Zen 4 (AVX-512), 1 / 2 threads, 12 x 32 -> wide: 64^3
// +12% / +13% (0.97 -> 1.10x numpy), 96^3 +13% / +7% (0.90 -> 1.02x at 1 thread), 127^3 +11%,
// 65^3 +12%, 36x128x600 +13% / +43%, 24x128x2000 +17% / +11%, 12x64x2048 +29%, 64x70x256 +11%.
// Contiguous B of such products also stays here where its row stride aliases in L1
// (strided_b_rows, choose_path), since a 64-column strip of it is most of each row: 64x64x128
// blocked -> wide +13% (0.94 -> 1.06x numpy), 128^3 +4.5% / +7%, 100x128x300 +10% / +42%,
// 128x64x1000 +6% / +14%, 64x128x2048 +26%, 50x96x1000 +17%.  Wider B (blocked before,
// which packed all of B for few rows), paired A/B 1 / 2 threads: 16x768x768 +61% / +42%
// (0.94 -> 1.53x numpy), 13x768x768 +81%, 30x2000x500 +31%, 64x3072x768 +12% / +20%,
// 128x3072x768 +11% / +8%, 64x50257x768 (an LM head for 64 tokens) +14% / +20%, 96x768x768
// +9% / +8%.  An A^T of at most 16 floats per k (K lines contiguous, strip_aliases counts
// only their number) takes them too: 16x768x768 A^T 0.92 -> 1.52x numpy, 16x64x1000 A^T +17%,
// 16x128x2000 A^T +16%.  At K = 1024 mixed (100x4096x1024 +6% / -11%), at K = 2048-3072 slower
// (128x768x2048 -8%, 24x4096x1024 -4%), hence kWideMaxK.  Not timed on Zen 5.
constexpr int kWideRows = MR / 2;
constexpr i64 kWideCols = 4 * W;
constexpr i64 kWideMaxK = 768;
// An A^T whose K lines alias (strip_aliases: a_cs a multiple of 1-2+ KiB, e.g. X^T of X with
// 64 columns) is copied per 6-row panel, k-major (wide_pack_a, gemm_small_wide): read in
// place, each tile fetched its 768+ A lines from L2 next to B's.  Only for N > kSmallDim
// (the blocked path took those before): with 128 columns the copy did not pay (128^3 A^T
// -6%, so gemm_small's 12 x 32 tiles with its own A copy stay).  A/B on Zen 4, 1 thread
// (blocked -> wide + copy): 64x3072x768 A^T 0.94 -> 1.15x numpy, 128x3072x768 A^T 0.99 ->
// 1.09x, 32x768x768 A^T 1.04 -> 1.20x, 48x512x512 A^T 1.05 -> 1.24x, 96x256x768 A^T +4%;
// 2 threads 64x3072x768 A^T 0.94-1.02 -> 1.06-1.09x, 32x768x768 A^T 1.08 -> 1.28-1.33x.
// Copying A^T that does not alias lost (100x768x768 A^T -9%, 24x128x2000 -30%).
bool wide_pack_a(const GemmParams& p) { return p.a_cs > kLineFloats && strip_aliases(p.a_cs, p.K); }
bool wide_tiles(const GemmParams& p) {
  return MR >= 12 && p.b_cs == 1 && p.N >= kWideCols && p.M <= kSmallDim &&
         p.K <= (p.N <= kSmallDim ? kSmallMaxK : kWideMaxK) && (p.M > MR || p.M % kWideRows == 0) &&
         (p.N > kSmallDim || !wide_pack_a(p));
}

template <int R>
SmallKernel wide_kernel_for(int rows, int nv) {
  switch (nv) {
    case 4: return small_kernel_for<R, 4>(rows);
    case 3: return small_kernel_for<R, 3>(rows);
    case 2: return small_kernel_for<R, 2>(rows);
    default: return small_kernel_for<R, 1>(rows);
  }
}

// gemm_small's product in wide tiles, 64-column strips of B outermost (a strip, K x 64, stays
// in L2 for all row panels).  The team splits the strips when there are 2+ per thread (each
// thread then streams only its share of B), else the row panels; every tile runs the same
// kernel whatever the split, so results do not depend on nth.  An aliasing A^T (wide_pack_a)
// is first copied by each thread, its own row panels only, 6 floats per k (a_cs = 6).
void gemm_small_wide(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth) {
  const i64 M = p.M, N = p.N, ldc = p.ldc;
  const i64 strips = ceil_div(N, kWideCols), rpan = ceil_div(M, kWideRows);
  i64 s_lo = 0, s_hi = strips, lo = 0, hi = rpan;
  if (strips >= 2 * nth || rpan < nth) split_range(strips, tid, nth, s_lo, s_hi);
  else split_range(rpan, tid, nth, lo, hi);
  const float* a = A;
  i64 a_rs = p.a_rs, a_cs = p.a_cs, a_ps = kWideRows * p.a_rs, p0 = 0;   // panel ip at a + (ip - p0) * a_ps
  if (wide_pack_a(p)) {
    const i64 K = p.K, r0 = lo * kWideRows, r1 = (hi * kWideRows < M) ? hi * kWideRows : M;
    float* ap = static_cast<float*>(workspace(kWsPackA, sizeof(float) * ((hi - lo) * kWideRows * K + 16)));
    for (i64 i0 = r0; i0 < r1; i0 += kWideRows) {
      float* dst = ap + (i0 - r0) * K;
      const float* src = A + i0 * p.a_rs;
      if (r1 - i0 >= kWideRows) {
        for (i64 k = 0; k < K; ++k, dst += kWideRows, src += p.a_cs)
#pragma GCC unroll 8
          for (int r = 0; r < kWideRows; ++r) dst[r] = src[r * p.a_rs];
      } else {
        const int rows = int(r1 - i0);
        for (i64 k = 0; k < K; ++k, dst += kWideRows, src += p.a_cs)
          for (int r = 0; r < rows; ++r) dst[r] = src[r * p.a_rs];
      }
    }
    a = ap;
    p0 = lo;
    a_rs = 1;
    a_cs = kWideRows;
    a_ps = kWideRows * K;
  }
  for (i64 j0 = s_lo * kWideCols; j0 < s_hi * kWideCols && j0 < N; j0 += kWideCols) {
    const int nr = int((N - j0 < kWideCols) ? N - j0 : kWideCols);
    const float* bias = p.bias ? p.bias + j0 : nullptr;
    for (i64 ip = lo; ip < hi; ++ip) {
      const i64 i0 = ip * kWideRows;
      const int rows = int((M - i0 < kWideRows) ? M - i0 : kWideRows);
      wide_kernel_for<kWideRows>(rows, int(ceil_div(nr, W)))(p.K, a + (ip - p0) * a_ps, a_rs, a_cs, B + j0, p.b_rs,
                                                             nr, C + i0 * ldc + j0, ldc, p.accumulate, bias);
    }
  }
}

// Products of 2..MR rows with a large row-major B (a decoding step of a few sequences through
// a big layer): B streamed once in blocks of kStreamRows rows, each block swept left to right
// in 64-column tiles (6 x 64 / R x 64 register tiles, C loaded and stored once per block), so
// that B is read as kStreamRows long contiguous row streams.  gemm_small's column tiles read
// each K-row strip of B (128-256 bytes per row) from top to bottom instead: from memory or L3
// that ran at 5-8 GB/s where whole rows stream at 18-24.  For B of 16+ MiB, or of 4+ MiB
// with a row stride that is a multiple of 1024 floats (each strip in one L1 set: the column
// tiles' worst case) or with 2048+ columns (GPT-2's 768x2304 / 768x3072 weights; with fewer,
// each thread's row segments were short and at 2 threads gemm_small stayed faster with B in
// L3).  A/B on Zen 4, 1 / 2 threads, gemm_small or blocked -> stream:
// 4x4096x4096 11.3 -> 28.5 / 24.8 -> 40.3 GFLOP/s (numpy 11.0 / 19.1), 2x4096x4096 5.8 ->
// 15.4 / 12.2 -> 26.5, 4x4096x1024 17 -> 60-67 / 25 -> 68-88 (numpy 16 / 26.5), 8x4096x1024
// 20 -> 50-57 / 29 -> 70-95 (numpy 28 / 44), 6x2048x2048 31 -> 59-84 / 48 -> 70-96,
// 4x768x3072 30-35 -> 59 (1 thread; 2 threads with B hot in L3 79 -> 60, numpy 37), and
// through 12 GPT-2 layers' weights (340 MB, B from memory as when decoding) M = 4 / 8 +75% /
// +45% at 1 thread, +58% / +79% at 2.  Each tile prefetches (prefetcht1) its columns of the
// block kStreamAhead blocks further down, so that B arrives in L2 a block sweep ahead: the
// hardware streams alone left the reads of a tile and its FMAs unoverlapped (the more rows,
// the lower the GB/s).  Blocks of 8 rows with it; without, 12 had been the compromise (8
// suited B from memory, 16-32 B from L3).  A/B 12 rows, no prefetch -> 8 rows, 2 blocks
// ahead, Zen 4 (contended memory that day: gemv read 21-25 GB/s): through 12 GPT-2 layers'
// weights, 1 thread M = 2 / 4 / 8 / 12 +15-25% / +15-25% / +5-15% / +5-25% (3 runs), 2
// threads +5% / +5-25% / +15-35% / +5-25%; 4x3072x4096 from memory 1 thread 14-17 -> 24-26
// GB/s (M = 2, 4), M = 8 10-12 -> 14-15; with B hot in L3 (4x768x3072 over and over) -5..-15%
// (1 thread 78-81 -> 70-75 GFLOP/s, 2 threads 115-140 -> 111-112).  prefetcht0 instead was
// 10-30% slower than no prefetch; 1 block ahead or 6-row blocks a little slower; 12-row
// blocks gained only 0-15% from it.  Results do not depend on nth (the team splits the column
// tiles; every tile sums its blocks in the same order).
constexpr i64 kStreamRows = 8;
constexpr i64 kStreamAhead = 2;
bool rows_stream(const GemmParams& p) {
  if (MR < 12 || p.M < 2 || p.M > MR || p.b_cs != 1 || p.N < kWideCols) return false;
  const double bsize = double(p.K) * double(p.N);
  return bsize >= double(4 << 20) || (bsize >= double(1 << 20) && (p.b_rs % 1024 == 0 || p.N >= 2048));
}
void gemm_rows_stream(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth) {
  const i64 M = p.M, N = p.N, K = p.K, ldc = p.ldc, KB = kStreamRows;
  const i64 tiles = ceil_div(N, kWideCols);
  i64 t_lo, t_hi;
  split_range(tiles, tid, nth, t_lo, t_hi);
  for (i64 k0 = 0; k0 < K; k0 += KB) {
    const i64 kb = (K - k0 < KB) ? K - k0 : KB;
    const bool first = k0 == 0;
    const bool load_c = !first || p.accumulate;
    const i64 kp = k0 + kStreamAhead * KB;
    const i64 kn = (K - kp < KB) ? K - kp : KB;   // rows of the block prefetched (<= 0: none)
    for (i64 t = t_lo; t < t_hi; ++t) {
      const i64 j0 = t * kWideCols;
      const int nr = int((N - j0 < kWideCols) ? N - j0 : kWideCols);
      const float* bias = (first && p.bias) ? p.bias + j0 : nullptr;
      for (i64 r = 0; r < kn; ++r)
        for (int l = 0; l < nr; l += kLineFloats) __builtin_prefetch(B + (kp + r) * p.b_rs + j0 + l, 0, 2);
      for (i64 i0 = 0; i0 < M; i0 += kWideRows) {
        const int rows = int((M - i0 < kWideRows) ? M - i0 : kWideRows);
        wide_kernel_for<kWideRows>(rows, int(ceil_div(nr, W)))(kb, A + i0 * p.a_rs + k0 * p.a_cs, p.a_rs, p.a_cs,
                                                               B + k0 * p.b_rs + j0, p.b_rs, nr, C + i0 * ldc + j0,
                                                               ldc, load_c, bias);
      }
    }
  }
}

// C = op(A) op(B) (+ C) (+ bias) for one small product; row panels of MR split over the team
// (the panels, and so every result, do not depend on nth).
void gemm_small(const GemmParams& p, const float* A, const float* B, float* C, int tid, int nth, float* bpack) {
  const i64 M = p.M, N = p.N, K = p.K, ldc = p.ldc;
  if (rows_stream(p)) return gemm_rows_stream(p, A, B, C, tid, nth);
  if (wide_tiles(p)) return gemm_small_wide(p, A, B, C, tid, nth);
  const bool pack_b = p.b_cs != 1;   // (row-major B at an aliasing stride: see choose_path)
  i64 lo, hi;
  if (pack_b) {
    split_range(ceil_div(N, NR), tid, nth, lo, hi);
    for (i64 q = lo; q < hi; ++q) {
      const i64 j0 = q * NR;
      pack_b_panel(bpack + j0 * K, B + j0 * p.b_cs, p.b_rs, p.b_cs, (N - j0 < NR) ? N - j0 : NR, K);
    }
    team_barrier(nth);
  }
  // Row panels over the team; with fewer panels than threads (M <= MR: the small-M products),
  // column tiles instead.
  const i64 rpan = ceil_div(M, MR);
  i64 q_lo = 0, q_hi = ceil_div(N, NR);
  if (rpan >= nth) {
    split_range(rpan, tid, nth, lo, hi);
  } else {
    lo = 0;
    hi = rpan;
    split_range(ceil_div(N, NR), tid, nth, q_lo, q_hi);
  }
  // A whose K lines (one per k: A^T storage, a_cs the k-stride) fall into few cache sets (a
  // row stride of a multiple of 1-2+ KiB, strip_aliases) is first copied k-major with this
  // thread's rows contiguous, when more than one column tile reads it: read in place, every
  // column tile fetched all K lines again from L3.  A/B on Zen 5, 1 thread: 7x2636x2552 A^T
  // with lda 2048 +37% (0.91 -> 1.25x numpy), 64x100x1500 A^T B^T lda 1024 +24%, 100x128x2000
  // A^T lda 2048 +12%, 12x768x768 A^T lda 1024 +6.5%.  (B with such a row stride: choose_path.)
  const bool pack_a = p.a_cs != 1 && q_hi - q_lo > 1 && strip_aliases(p.a_cs, K);
  const i64 r0 = lo * MR, r1 = (hi * MR < M) ? hi * MR : M;
  float* apack = nullptr;
  if (pack_a) {
    const i64 nrw = r1 - r0;
    apack = static_cast<float*>(workspace(kWsPackA, sizeof(float) * (nrw * K + 16)));
    for (i64 k = 0; k < K; ++k)
      for (i64 r = 0; r < nrw; ++r) apack[k * nrw + r] = A[(r0 + r) * p.a_rs + k * p.a_cs];
  }
  for (i64 j0 = q_lo * NR; j0 < q_hi * NR && j0 < N; j0 += NR) {
    const int nr = int((N - j0 < NR) ? N - j0 : NR);
    const float* b = pack_b ? bpack + j0 * K : B + j0;
    const i64 b_rs = pack_b ? NR : p.b_rs;
    const float* bias = p.bias ? p.bias + j0 : nullptr;
    for (i64 ip = lo; ip < hi; ++ip) {
      const i64 i0 = ip * MR;
      const int rows = int((M - i0 < MR) ? M - i0 : MR);
      const SmallKernel f = nr > W ? small_kernel_for<MR, 2>(rows) : small_kernel_for<MR, 1>(rows);
      if (pack_a)
        f(K, apack + (i0 - r0), 1, r1 - r0, b, b_rs, nr, C + i0 * ldc + j0, ldc, p.accumulate, bias);
      else
        f(K, A + i0 * p.a_rs, p.a_rs, p.a_cs, b, b_rs, nr, C + i0 * ldc + j0, ldc, p.accumulate, bias);
    }
  }
  if (pack_b) team_barrier(nth);   // before the next product overwrites bpack
}

// Panels of a slice lie panel_stride(kc) floats apart: one cache line more than a panel, so that
// the same row of successive panels falls in successive L1 / L2 sets (NR * kc floats apart, a
// multiple of 4 KiB, every row of B scattered into the panels went to one pair of sets).
constexpr i64 kPanelPad = kLineFloats;
IRF_INLINE i64 panel_stride(i64 kc) { return NR * kc + kPanelPad; }
IRF_INLINE i64 slice_floats(i64 ncpad) { return KC * ncpad + (ncpad / NR) * kPanelPad; }

// Rows k0..k0+nk-1 (kPackRows rows, all in one slice; slices are kcs deep, see slice_depth) of
// B (row stride rs, unit column stride, nc columns) into their panels in the slice's buffer:
// panel q of a slice of depth kc at q * panel_stride(kc), row k of the slice at k*NR within
// it; padding columns zero.  Each row's columns of the next item (kPackRows rows further) are
// prefetched while this one is copied: the items of a slice are packed between micro-kernel
// calls, so the lines have a panel's compute to arrive.  Where B's rows are wider than the
// columns packed (a column part, a view), the hardware streams stopped at each row's end:
// A/B at 1 thread on Zen 5, 75x837x3746 A^T B with ldb 1674 +8-10% (0.97 -> 1.06x numpy),
// contiguous 75x837x3746 / 75x1674x3746 +2-3%, the training shapes and 1000^3 neutral.
constexpr i64 kPackRows = 8;
static_assert(KC % kPackRows == 0, "a group of packed rows must not straddle two K slices");
void pack_b_rows(float* __restrict slice, const float* b, i64 rs, i64 k0, i64 nk, i64 K, i64 kcs, i64 nc) {
  const i64 pc = k0 / kcs * kcs, kc = (K - pc < kcs) ? K - pc : kcs;
  const i64 nfull = nc / NR, ps = panel_stride(kc);
  for (i64 k = k0; k < k0 + nk; ++k) {
    const float* src = b + k * rs;
    float* dst = slice + (k - pc) * NR;
    const float* next = src + kPackRows * rs;   // the same row of the next item
    const bool ahead = k + kPackRows < K;
    for (i64 q = 0; q < nfull; ++q) {
      if (ahead) {
        __builtin_prefetch(next + q * NR, 0, 3);
        __builtin_prefetch(next + q * NR + W, 0, 3);
      }
      vstore(dst + q * ps, vload(src + q * NR));
      vstore(dst + q * ps + W, vload(src + q * NR + W));
    }
    if (nfull * NR < nc) {
      float* d = dst + nfull * ps;
      const i64 n = nc - nfull * NR;
      for (i64 j = 0; j < n; ++j) d[j] = src[nfull * NR + j];
      for (i64 j = n; j < NR; ++j) d[j] = 0.f;
    }
  }
}

// Depth of the K slices of a product: K split into ceil(K / KC) equal slices (whole kPackRows
// groups, so at most KC), not KC-deep slices and a short last one, whose pass over C (every
// C tile loaded and stored again) costs as much as a full slice's for a few k: K = 769 ran as
// 256 + 256 + 256 + 1.  A/B on Zen 5 against KC-deep slices, 1 / 2 threads: 1024x1024x769
// +6.0% / +6.7% (0.98 -> 1.04x numpy at 1 thread), 2048x768x257 +5.4% / +4.5% (0.95 -> 1.00x),
// 1024x1024x520 +7.4% / +10% (0.95 -> 1.02x), 1024x1024x780 +6.1%; K a multiple of 256 or
// 1000^3 (4 x 250), 700x2000x500 A^T, 2048x768x3000 B^T, 512x512x300 -0.5..+1.3%.
IRF_INLINE i64 slice_depth(i64 K) {
  const i64 n = ceil_div(K, KC);
  return round_up(ceil_div(K, n), kPackRows);
}

// Columns of B in one block (each KC slice of it packed into a slice buffer of KC x ncb
// floats and a line per panel, 4 MiB at most): at most NC.  Every column block re-packs A and
// ends with a barrier, so blocks are as wide as that allows; N is split into equal blocks,
// since a small leftover block (e.g. 2720 + 352 columns) would waste packing.
i64 b_block_cols(i64 N) {
  if (N <= NC) return N;
  const i64 nblocks = ceil_div(N, NC);
  return round_up(ceil_div(N, nblocks), NR);
}

// Dynamic work distribution: the next item index of the current phase (team-shared counter;
// indices below `base` belonged to earlier phases).
IRF_INLINE i64 next_item(i64* counter, i64 base) {
  return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED) - base;
}

// B pack items handed out by a team.  The count only grows over a gemm call, so it is never
// reset between phases (a reset would need its own barrier): each thread keeps in claim_base
// the value it had when the current phase began.
struct PackSync {
  i64* claim;       // shared: pack items handed out so far (claimed in index order)
  i64 claim_base;   // this thread's: *claim at the start of the current phase
};

// Claims the next pack item if its index (counted from the phase start) is below `end`:
// returns it, or -1.  A compare-exchange, so a failed claim does not move the counter.
IRF_INLINE i64 claim_item(PackSync& ps, i64 end) {
  i64 c = __atomic_load_n(ps.claim, __ATOMIC_RELAXED);
  while (c < ps.claim_base + end)
    if (__atomic_compare_exchange_n(ps.claim, &c, c + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return c - ps.claim_base;
  return -1;
}

// ---------------------------------------------------------------------------------------
// Which kernel computes a product of these dimensions and strides (the same for every batch
// element and every thread count: results never depend on the number of threads).
enum class Path { kEmpty, kRowVec, kColVec, kSmall, kSkinny, kSkinnyM, kSkinnyT, kBlocked };
Path choose_path(const GemmParams& p) {
  const i64 M = p.M, N = p.N, K = p.K;
  if (K == 0) return Path::kEmpty;
  // matrix-vector products (no packing): one row of A, or one column of B
  if (M == 1 && (p.b_rs == 1 || p.b_cs == 1)) return Path::kRowVec;
  if (N == 1 && (p.a_rs == 1 || p.a_cs == 1)) return Path::kColVec;
  // Also products of at most MR rows with row-major B (a classifier head's weight gradient
  // dY^T X, a decoding step of a few sequences): one row panel, so every B element is used
  // once and packing B (all of it, for a few rows) was most of the time; B's rows are read in
  // place, K in one pass, column tiles split over the team.  Not when B's row stride is a
  // multiple of 4 KiB and K > 1024: the K-row strips then hit one L1 / L2 set each and the
  // blocked path was faster (4x1024x4096 -7%, 8x2048x2048 -11%).  A/B on Zen 5 against the
  // blocked path, 1 / 2 threads: 2x3373x167 A^T 2.2x / 2.6x (0.83 -> 1.86x numpy at 1 thread),
  // 8x768x768 2.4x / 2.2x, 12x3072x768 A^T 2.0x / 2.0x, 4x4096x1024 1.4x / 1.5x, 12x768x3072
  // A^T 1.9x / 2.2x.
  // Small products of 48+ rows whose B rows (read in place there) are a multiple of 1-2+ KiB
  // apart (strip_aliases: each K-row strip of B falls into few cache sets) take the blocked
  // path, which packs B once: gemm_small re-read each strip from L3 for every row panel.  A/B
  // on Zen 5, 1 thread: 87x104x1876 A^T B, ldb 1024 +59% (0.81 -> 1.28x numpy), 87x104x1876
  // +24%, 50x100x1000 ldb 2048 +23%, 50x96x1000 +13%, 80x120x1500 A^T +15%, 87x128x1876 +10%,
  // 64x70x256 +1%, 64x64x256 -5%; with 2-3 row panels gemm_small stayed faster (24x128x2000
  // -10%, 36x128x600 -19%, 36x100x600 -15% as blocked).  gemm_small itself packed such a B
  // for 96+ rows before; packing it there for fewer rows was slower (36x128x600 -28%).
  if (rows_stream(p)) return Path::kSmall;
  const bool wide = wide_tiles(p);
  const bool strided_b_rows = M >= 48 && p.b_cs == 1 && strip_aliases(p.b_rs, K) && !(wide && p.b_rs == N);
  if (((small_product(M, N, K) || wide) && !strided_b_rows) ||
      (M <= MR && p.b_cs == 1 && (K <= 1024 || p.b_rs % 1024 != 0)))
    return Path::kSmall;
  const bool skinny_copy_ok = double(N) * double(K) <= kSkinnyMaxCopy;
  if (N >= 2 && N <= kSkinnyN && p.a_cs == 1 && (p.b_rs == 1 || skinny_copy_ok)) return Path::kSkinny;
  // 9..16 rows too, as two passes over B^T, while it is small enough (kSkinnyMaxCopy, 4M floats)
  // to come back from the cache: A/B 1 / 2 threads 12x3072x768 1.48x / 1.23x, 9x768x3072 1.57x /
  // 1.62x, 16x768x3072 1.19x / 2.0x; with larger B^T two streams from memory lost
  // (12x50257x768 0.79x at 1 thread, 16x3072x3072 0.78x), and at 24-32 rows against a small
  // B^T the blocked path was faster (24x768x768 0.71x, 32x768x768 0.64x).
  if (M >= 2 && p.a_cs == 1 && p.b_rs == 1 &&
      (M <= kSkinnyN || (M <= 2 * kSkinnyN && double(N) * double(K) <= kSkinnyMaxCopy)))
    return Path::kSkinnyM;
  if (N >= 2 && N <= kSkinnyN && p.a_rs == 1 && skinny_copy_ok) return Path::kSkinnyT;
  return Path::kBlocked;
}

// ---------------------------------------------------------------------------------------
// One product (batch element) computed by a team of nth threads; tid is this thread.
// Must be called by every member of the team (barriers inside when nth > 1).
// `counter` is shared by the team; `base` (one per thread, equal in all) counts the indices
// that earlier phases consumed from it, so the counter never needs resetting.  `path` is
// choose_path() of the whole product (a private part's own dimensions might choose another).
void gemm_one(const GemmParams& p, Path path, i64 bi, int tid, int nth, float* bpack, i64* counter, i64& base,
              PackSync& ps) {
  const i64 M = p.M, N = p.N, K = p.K;
  const float* A = p.a + bi * p.a_bs;
  const float* B = p.b + bi * p.b_bs;
  float* C = p.c + bi * p.c_bs;
  const i64 ldc = p.ldc;

  if (path == Path::kEmpty) {                      // empty sum: C = (acc ? C : 0) + bias
    i64 lo, hi;
    split_range(M, tid, nth, lo, hi);
    for (i64 i = lo; i < hi; ++i)
      for (i64 j = 0; j < N; ++j) {
        const float v = p.bias ? p.bias[j] : 0.f;
        C[i * ldc + j] = p.accumulate ? C[i * ldc + j] + v : v;
      }
    return;
  }

  if (path == Path::kRowVec || path == Path::kColVec) {
    const bool row_vec = path == Path::kRowVec;
    const float* xsrc = row_vec ? A : B;
    const i64 xs = row_vec ? p.a_cs : p.b_rs;
    const float* x = xsrc;
    if (xs != 1) {                                 // every thread gathers its own copy
      float* xc = static_cast<float*>(workspace(kWsScratch0, sizeof(float) * K));
      for (i64 k = 0; k < K; ++k) xc[k] = xsrc[k * xs];
      x = xc;
    }
    const i64 R = row_vec ? N : M;
    const float* mat = row_vec ? B : A;   // row_vec: mat(j, k) = B(k, j);  col_vec: mat(i, k) = A(i, k)
    const i64 rs = row_vec ? p.b_cs : p.a_rs, cs = row_vec ? p.b_rs : p.a_cs;
    const GemvOut o{C, row_vec ? 1 : ldc, p.bias, row_vec ? 1 : 0, p.accumulate};
    const i64 nchunks = ceil_div(R, kGemvChunk);
    auto rows = [&](i64 c0, i64 c1, i64& lo, i64& hi) {   // chunks [c0, c1) -> rows [lo, hi)
      lo = c0 * kGemvChunk;
      hi = (c1 * kGemvChunk < R) ? c1 * kGemvChunk : R;
    };
    i64 lo, hi;
    if (cs == 1 || !gemv_split_k(R, K)) {
      split_range(nchunks, tid, nth, lo, hi);
      rows(lo, hi, lo, hi);
      if (cs == 1) gemv_dot(o, mat, rs, x, lo, hi, K);
      else gemv_axpy(mat, cs, x, lo, hi, 0, K, gemv_eight(R), [&](i64 rb, const float* y, i64 n) {
        for (i64 i = 0; i < n; ++i) o.put(rb + i, y[i]);
      });
      return;
    }
    // K in two halves: partial sums part[h][r] (in the shared B-packing buffer), tasks
    // (half, group of row chunks) spread over the team, then out = part[0] + part[1].
    const i64 kh = round_up(ceil_div(K, 2), 4);
    float* part[2] = {bpack, bpack + round_up(R, 16)};
    const int groups = nth / 2 > 1 ? nth / 2 : 1;
    for (int t = tid; t < 2 * groups; t += nth) {
      const int h = t % 2;
      split_range(nchunks, t / 2, groups, lo, hi);
      rows(lo, hi, lo, hi);
      float* dst = part[h];
      gemv_axpy(mat, cs, x, lo, hi, h ? kh : 0, h ? K : kh, gemv_eight(R), [&](i64 rb, const float* y, i64 n) {
        for (i64 i = 0; i < n; ++i) dst[rb + i] = y[i];
      });
    }
    team_barrier(nth);
    split_range(nchunks, tid, nth, lo, hi);
    rows(lo, hi, lo, hi);
    for (i64 r = lo; r < hi; ++r) o.put(r, part[0][r] + part[1][r]);
    team_barrier(nth);   // before the next product overwrites the partial sums
    return;
  }

  switch (path) {
    case Path::kSmall: return gemm_small(p, A, B, C, tid, nth, bpack);
    case Path::kSkinny: return gemm_skinny(p, A, B, C, tid, nth);
    case Path::kSkinnyM: return gemm_skinny_m(p, A, B, C, tid, nth);
    case Path::kSkinnyT: return gemm_skinny_t(p, A, B, C, tid, nth);
    default: break;
  }

  // (balanced row blocks can be up to two grains longer than MC)
  float* apack = static_cast<float*>(workspace(kWsPackA, sizeof(float) * (MC + 2 * MR) * KC));
  const i64 ncb = b_block_cols(N);
  const i64 kcs = slice_depth(K);

  // Row blocks of A (and groups of B panels when M is too small to feed every thread).
  i64 mblocks = ceil_div(M, MC), groups = 1;
  if (nth > 1) {
    if (mblocks >= nth) mblocks = round_up(mblocks, nth);
    else groups = nth / mblocks;
  }
  // One thread: blocks of mc_eff rows (whole panels; only the last block has a partial one).
  // A team: the row blocks (a multiple of nth, taken dynamically) are as equal as whole
  // kRowGrain units allow, so threads meet at each slice barrier with equal work.  Whole-panel
  // blocks left the thread with the larger blocks ~3% more work at 512^3 and 1024^3 (264 + 248
  // rows each); A/B on Zen 5 at 2 threads, 12-18 rounds: 512^3 and 1024^3 +1.0-1.7%, M = 2048
  // shapes -0.3 to +1.1% (each block then ends in a half panel, which costs ~0.7 of a full one).
  const i64 mc_eff = round_up(ceil_div(M, mblocks), MR);
  const bool balance = nth > 1 && mblocks > 1;
  if (!balance) mblocks = ceil_div(M, mc_eff);
  const i64 units = ceil_div(M, kRowGrain);
  auto row_start = [&](i64 ib) -> i64 {   // first row of block ib (M for ib == mblocks)
    const i64 r = balance ? units * ib / mblocks * kRowGrain : ib * mc_eff;
    return r < M ? r : M;
  };

  for (i64 jc = 0; jc < N; jc += ncb) {
    const i64 nc = (N - jc < ncb) ? N - jc : ncb;
    const i64 npan = ceil_div(nc, NR);
    const i64 ncpad = npan * NR;

    // B(:, jc:jc+nc) is packed one KC slice at a time into two slice buffers: slice s into
    // sbuf[s % 2] while the team computes with slice s - 1 (each task packs one item of the next
    // slice per B panel it computes with; what is left is packed before the barrier that ends a
    // slice).  Packed all at once before computing, both threads read B (often from DRAM) at
    // the same time while the FMA units idled; packed for all of K into one buffer (24 MB for
    // 768x3072x2048), the packed copy itself went to memory and back, where two slices (up to
    // 8 MiB) stay in cache.  An item is one panel of one KC slice, or, for row-major B (unit
    // column stride), a group of kPackRows rows, each read in order and scattered 2W floats at
    // a time into every panel.
    const bool by_rows = p.b_cs == 1;
    const i64 nslices = ceil_div(K, kcs);
    const i64 nitems = by_rows ? ceil_div(K, kPackRows) : nslices * npan;
    auto first_item = [&](i64 s) -> i64 {        // items of slice s: [first_item(s), first_item(s + 1))
      if (s >= nslices) return nitems;
      return by_rows ? s * (kcs / kPackRows) : s * npan;
    };
    float* const sbuf[2] = {bpack, bpack + slice_floats(ncpad)};
    auto pack_one = [&](i64 end) -> bool {       // packs one unclaimed item below `end`, if any
      const i64 it = claim_item(ps, end);
      if (it < 0) return false;
      if (by_rows) {
        const i64 k0 = it * kPackRows;
        pack_b_rows(sbuf[(k0 / kcs) % 2], B + jc, p.b_rs, k0, (K - k0 < kPackRows) ? K - k0 : kPackRows, K, kcs, nc);
      } else {
        const i64 sl = it / npan, pc = sl * kcs, q = it % npan;
        const i64 kc = (K - pc < kcs) ? K - pc : kcs;
        const i64 j0 = jc + q * NR;
        const i64 nr = (N - j0 < NR) ? N - j0 : NR;
        pack_b_panel(sbuf[sl % 2] + q * panel_stride(kc), B + pc * p.b_rs + j0 * p.b_cs, p.b_rs, p.b_cs, nr, kc);
      }
      return true;
    };

    // Tasks: independent (row block x panel group), for one KC slice at a time, taken
    // dynamically so a thread slowed by another process does less of the work.  Each C tile
    // adds the slices in order whichever thread computes it: results do not depend on the
    // thread count.
    const i64 ntasks = mblocks * groups;
    // C rows a multiple of 2 KiB apart put all MR rows of a C tile into the same one or two L1
    // sets (64 sets of 64-byte lines, 12 ways): the tile's 24-36 lines then evict each other
    // and the B panel's lines there on every call.  Such products run each 12 x 32 tile as two
    // 6 x 32 halves (the same packed A panel read with stride MR: same sums in the same
    // order, bitwise the same results), half the lines per set at a time.  On AVX-512 Zen 5,
    // A/B: N = 3072 products +1.4-3.9% at 1 thread (2048x3072x768 with B or B^T, 768x3072x2048
    // A^T B), 1024^3 +0.5-1.2%, 2 threads neutral.  Only for MR = 12: the halves of the AVX2 /
    // generic tiles (3 x 16, 2 x 4) would have too few accumulators to hide the FMA latency.
    const bool split_rows = MR >= 12 && ldc % 512 == 0;
    // Row-major A is read in place (no packing) when the column block is at most 16 panels
    // wide, where packing A costs the most per flop (each packed A block serves only nc / NR
    // micro-kernel calls per row panel).  The micro-kernel then broadcasts from 12 row pointers
    // instead of one packed panel; the lines it fills into L1 per k are the same in number (12
    // rows x 4 bytes, one line per row every 16 k, against 48 packed bytes per k).  A/B on Zen
    // 5: N = 512 products +2.4%
    // (512^3) and +2.0% (2048x512x768 B^T) at 1 thread, +4.1% / +3.1% at 2; wider N neutral
    // (2048x768x768 -0.2..+2.2%) to slightly slower (700x600x500 -0.8 / -1.1%), so not there.
    // Measured for the AVX-512 tile only: the AVX2 / generic builds keep packing.  Row strides
    // that are a multiple of 1024 floats (the 12 rows' lines of each k in one L1 set, 12 ways
    // on Zen 5) were excluded on that reasoning until A/B showed them faster in place too:
    // 1 / 2 threads 4096x16x1024 B^T +61% / +37% (0.92 -> 1.49x numpy at 1 thread),
    // 4096x32x1024 +36%, 4096x64x1024 +24%, 2048x128x1024 +8% / +0.5% (0.94 -> 1.07x numpy),
    // 2048x512x1024 +5% / +3%, 1024x512x2048 +4% / +3%, 2048x384x4096 +2%, 1000x256x8192 B^T +3%.
    const bool aip = MR >= 12 && p.a_cs == 1 && npan <= 16;
    // A^T storage (the dW products X^T dY): the MR values of one k are contiguous, so a full
    // panel is read in place with k-stride lda and no packing at all (a partial last panel is
    // still packed: reading MR values past it could leave the array).  Each k then touches a
    // new line; at N <= 24 panels that costs less than packing.  A/B on Zen 5, 1 thread:
    // 768x16x768 +45%, 4096x4x4096 +20%, 768x64x768 +17%, 777x33x999 +14%, 100x100x5000 +3.5-5.5%,
    // 1024x256x1024 +1.5%, 768x768x2048 +1.2-1.4% (2 threads +1.6%), 3072x768x2048 0.0%;
    // 48 and 96 panels -1.2..+0.6% (so not there).
    // Not when the tiles run as split halves (C row stride a multiple of 512) and A^T's row
    // stride is a multiple of 1024 floats: each half re-reads the panel's kc lines of A, whose
    // 4 KiB-multiple stride maps them to at most 16 L2 set groups, so the second half fetched
    // them from L3.  A/B on Zen 5 against packing A: 1024x512x1024 A^T B 0.66x, 2048x512x2048
    // 0.71x, 3072x512x768 0.71x, 2048x512x768 A^T B^T 0.71x (0.66-0.73x numpy in place, 1.02-1.05x
    // packed; 2 threads alike); without split halves such strides were fine (4096x448x1000,
    // 4096x640x1000 +2%, 8192x64x1000 +24% in place).
    const bool atip = MR >= 12 && !aip && p.a_rs == 1 && npan <= 24 && !(split_rows && p.a_cs % 1024 == 0);
    // K <= kBandMaxK: the tiles of a task run row panel by row panel (each across all of the
    // task's B panels) instead of B panel by B panel.  Such products are bound by writing C,
    // and B panel by B panel a C line shared by two neighbouring tiles (a 32-float row segment
    // not 64-byte aligned spans 3 lines) came back for its second half only after the task's
    // whole column strip had passed: fine from L1 / L2 while C rows are spread over the cache
    // sets, from L3 or memory when the row stride is a multiple of 2-16 KiB (every row in one
    // set).  A/B on Zen 5, 1 thread: 1438x247x3 A^T B^T with ldc 4096 19.8 -> 67.0 GFLOP/s (0.38
    // -> 1.28x numpy), 1438x247x16 ldc 4096 85 -> 191, 2048x768x16 ldc 4096 95 -> 228,
    // 590x1543x6 A^T B^T ldc 4096 28.5 -> 129, 248x1001x23 ldc 2048 (rows not 64-byte aligned)
    // 130 -> 226; contiguous C -2..+15% (1438x247x3 +15%); 2 threads alike (contiguous -3..+3%).
    // At K = 48-128 neutral either way.
    const bool band_order = K <= kBandMaxK;
    while (pack_one(first_item(1))) {   // slice 0, by the whole team
    }
    team_barrier(nth);
    for (i64 pc = 0; pc < K; pc += kcs) {
      const i64 kc = (K - pc < kcs) ? K - pc : kcs;
      const bool first = (pc == 0);
      const bool load_c = !first || p.accumulate;   // later slices add to C
      const i64 ahead = first_item(pc / kcs + 2);   // items of the next slice
      for (i64 t = next_item(counter, base); t < ntasks; t = next_item(counter, base)) {
        const i64 ib = t / groups, g = t % groups;
        const i64 i0 = row_start(ib);
        const i64 mc = row_start(ib + 1) - i0;
        const i64 q0 = npan * g / groups, q1 = npan * (g + 1) / groups;
        i64 ir = 0;
        if (aip) ir = mc;   // A read in place by the micro-kernel
        if (atip) ir = mc / MR * MR;   // only a partial last panel is packed
        if (p.a_rs == 1)
          for (; ir + 4 * MR <= mc; ir += 4 * MR)
            pack_a_panels_t<4>(apack + ir * kc, A + (i0 + ir) + pc * p.a_cs, p.a_cs, kc);
        for (; ir < mc; ir += MR) {
          const i64 mr = (mc - ir < MR) ? mc - ir : MR;
          pack_a_panel(apack + ir * kc, A + (i0 + ir) * p.a_rs + pc * p.a_cs, p.a_rs, p.a_cs, mr, kc);
        }
        // One C tile: row panel ir of this block, B panel q.
        auto tile = [&](i64 q, i64 ir, const float* bp) {
          const i64 j0 = jc + q * NR;
          const int nr = int((N - j0 < NR) ? N - j0 : NR);
          const float* bias = (first && p.bias) ? p.bias + j0 : nullptr;
          const int mr = int((mc - ir < MR) ? mc - ir : MR);
          float* ct = C + (i0 + ir) * ldc + j0;
          if (aip)
            run_tile<kRowsInPlace>(kc, A + (i0 + ir) * p.a_rs + pc, MR / 2 * p.a_rs, bp, ct, ldc, mr, nr, load_c,
                                   bias, p.a_rs, split_rows);
          else if (atip && mr == MR)   // full panel of A^T in place (a partial one was packed)
            run_tile<kColsInPlace>(kc, A + (i0 + ir) + pc * p.a_cs, MR / 2, bp, ct, ldc, mr, nr, load_c, bias,
                                   p.a_cs, split_rows);
          else
            run_tile<kPacked>(kc, apack + ir * kc, MR / 2, bp, ct, ldc, mr, nr, load_c, bias, 0, split_rows);
        };
        const float* const slice = sbuf[(pc / kcs) % 2];
        if (band_order) {
          for (i64 q = q0; q < q1; ++q) pack_one(ahead);
          for (i64 ir = 0; ir < mc; ir += MR)
            for (i64 q = q0; q < q1; ++q) tile(q, ir, slice + q * panel_stride(kc));
          continue;
        }
        for (i64 q = q0; q < q1; ++q) {
          pack_one(ahead);
          const float* bp = slice + q * panel_stride(kc);
          // the next B micro-panel (NR * kc floats) is prefetched a slice per call
          const float* bnext = bp + panel_stride(kc);
          const i64 nlines = NR * kc / kLineFloats, per_call = ceil_div(nlines, ceil_div(mc, MR));
          for (i64 ir = 0; ir < mc; ir += MR) {
            if (q + 1 < q1)
              for (i64 l = (ir / MR) * per_call, le = l + per_call < nlines ? l + per_call : nlines; l < le; ++l)
                __builtin_prefetch(bnext + l * kLineFloats, 0, 2);
            tile(q, ir, bp);
          }
        }
      }
      base += ntasks + nth;   // every thread overshoots the task counter once per slice
      while (pack_one(ahead)) {   // the rest of the next slice
      }
      team_barrier(nth);   // slice done by all, next slice packed
    }
    // Every item was claimed (each slice completed before its barrier), and the last slice's
    // barrier also lets the next column block (or product) overwrite the slice buffers.
    ps.claim_base += nitems;
  }
}

// 2..kPrivateMaxThreads threads, a blocked product: one independent part per thread (rows or
// columns, see private_split), each computed alone with the thread's own packing buffers
// (gemm_one with a team of one: no barrier, nothing packed by one core and read by the other),
// instead of one team sharing each packed B slice.  Each part packs all of the other operand
// (B for row parts, A for column parts), but on this 2-core VM the team's cross-core traffic
// was the weak point: for minutes at a time (other tenants, vCPU placement) its B packing took
// 2.6x longer and its slice barriers 5x (rdtsc per phase, 2048x768x768), and the team ran
// 5-10% slower while numpy and our 1-thread calls did not change.  In-process A/B at 2
// threads, paired rounds, team -> parts: in such minutes 2048x768x768 +5..11%, 2048x768x3072
// +8%, 768x768x2048 A^T +5..7%, 1024^3 +9%, 700x2000x500 A^T +10%; in the team's good minutes
// -0.7..+1.6% on the training shapes.  Smaller products followed as team.cpp removed the
// after-idle loss of 2-thread calls (fifteenth session: 2^20+ multiply-adds with 256+ rows per
// thread, 512^3 +11%, 600x100x100 +25%, 512x48x200 +35%; products of fewer MC-row blocks than
// threads with few B panels, 256x16x256 +56-72%), and in the sixteenth all others with enough
// rows or columns (private_split).  Row chunks taken dynamically, each packing its own B, cost
// 2-3% (256 rows) / 6% (128 rows) back to back against the team.  Timed at 2 threads only
// (this machine's cores); 3-4 threads take parts by the same rule (tested for results, not
// timed), more keep the team: each part packs all of the other operand, nth times in all,
// which grows with the thread count.  Results are the same bits as one thread's: every C
// element is summed in the same order whatever tile or part computes it, and each part runs
// the blocked path like the whole (gemm_one is given the whole product's path: a part's own
// dimensions could choose another, e.g. gemm_small).
constexpr int kPrivateMaxThreads = 4;

// Part tid of nth of a product split by rows (split == 1: whole kRowGrain units) or by
// columns (split == 2: whole NR panels), as equal as those units allow.
GemmParams private_part(const GemmParams& p, int split, int tid, int nth) {
  GemmParams q = p;
  const i64 unit = split == 1 ? kRowGrain : NR, len = split == 1 ? p.M : p.N;
  const i64 units = ceil_div(len, unit);
  const i64 lo = units * tid / nth * unit, hi_u = units * (tid + 1) / nth * unit;
  const i64 hi = hi_u < len ? hi_u : len, n = hi > lo ? hi - lo : 0;
  if (split == 1) {
    q.M = n;
    q.a = p.a + lo * p.a_rs;
    q.c = p.c + lo * p.ldc;
  } else {
    q.N = n;
    q.b = p.b + lo * p.b_cs;
    q.c = p.c + lo;
    if (p.bias) q.bias = p.bias + lo;
  }
  return q;
}

// 0: the shared team; 1: one part of the rows per thread; 2: one part of the columns.
// Column parts when N > M and each part has 3+ B panels (the team did no better there, and its
// slice barriers cost most where a slice is little work per thread), rows otherwise, if every
// part gets two row panels.  With K <= kBandMaxK (products bound by writing C) columns only
// when N >= 8 M: column parts share C's lines at their boundaries on every row, which costs
// most where rows are short (250x227x25 -57% as columns, 533x855x32 -6% and -35% in two
// runs, 300x1500x8 A^T -10%); with N >= 8 M they were faster than rows (1 A/B: 60x2000x10 +39%, 99x3117x5 A^T B^T
// +12%, 150x4000x24 B^T +7%, 200x2000x16 +6%, 169x3211x19 A^T +3%, 100x1000x20 +2%).  3
// panels per part: 66x214x812 A^T B^T +4-5% as columns against rows (7 panels; at 5 panels
// 212x160x184 A^T rows were 14% faster, 286x134x1855 B^T even).  A/B on Zen 5 at 2 threads
// (30 random shapes of 51-601 rows, which the team computed before the sixteenth session),
// team -> parts: in a minute when the team was slow 200x61x95 0.41 -> 1.28x numpy (rows),
// 75x1674x3746 A^T 0.82 -> 1.03x, 451x2882x2502 A^T 0.89 -> 1.00x, 392x780x2165 A^T 0.92 ->
// 1.02x, 184x1462x1313 A^T B^T 0.95 -> 1.08x, 71x1613x500 1.11 -> 1.54x (columns); in later
// minutes 40x768x3072 +87%, 64x3072x768 +55%, 96x768x768 A^T +45%, 64x50257x768 B^T +25%,
// 160x4096x512 +15%, 533x855x32 +6% (rows), but row-major B with long K
// -3..-10% as columns (75x1674x3746 A^T, 189x1380x1302 A^T: each part reads half of every
// row of B, which the hardware prefetch streams handle worse), still 1.03-1.18x numpy.  The
// team keeps products with too few rows for row parts (fewer than 2 * MR per thread) and too
// few columns for column parts, and more than kPrivateMaxThreads threads.
int private_split(const GemmParams& p, Path path, int nth) {
  if (nth < 2 || nth > kPrivateMaxThreads || path != Path::kBlocked) return 0;
  const bool columns_ok = ceil_div(p.N, NR) >= 3 * nth && (p.K > kBandMaxK || p.N >= 8 * p.M);
  if (columns_ok && p.N > p.M) return 2;
  return p.M >= 2 * MR * nth ? 1 : 0;
}

// A blocked product whose last B panel ends 1-4 columns past a full vector (N = 17, 33, 321,
// 1028, ...) computes those columns as a product of their own, on the skinny or
// matrix-vector kernels (one more pass over A, t FMA lanes per A element), and the rest
// blocked: the panel's last vector (NV = 1 for 1-4 columns, the second one of NV = 2 for 17-20)
// cost W lanes per A element for 1-4 of them.  A/B on Zen 5 (AVX-512), 1 / 2 threads:
// 150x17x309 A^T 0.71 -> 0.93x numpy / 0.87 -> 0.97x, 2048x17x768 +40% / +33%, 1000x33x1000
// A^T +39% / +36%, 500x33x700 +38% / +21%, 300x20x1000 B^T +35% / +42%, 200x36x300 A^T +31% /
// +15%, 800x65x500 +20% / +9%, 1753x321x276 B^T +4% / +1.5%, 2048x770x768 +0.5% / +0.5%.
// For 5-8 columns the extra pass cost as much as it saved (500x24x700 -8%, 700x56x300 -6%,
// 2048x776x768 -2%, 500x40x700 A^T +23%), so not there.  Small products (gemm_small) too,
// where their tail is one column (2-4 would be small products again): 1 / 2 threads 100x17x300
// 0.91 -> 1.17x numpy, 64x33x500 A^T +58% / +38%, 128x65x1000 B^T +31% / +34%, 120x97x800 A^T
// B^T +24% / +21%, 50x49x200 +10%, 20x113x2000 +4% / +3%.  Only where those columns would take
// gemm_skinny / gemm_skinny_t / the matrix-vector kernel (A with a unit stride).  Each column
// is computed by the same kernel at every thread count.  AVX-512 only (timed there).
i64 tail_columns(i64 N) {
  const i64 r = N % NR, t = r > W ? r - W : r;
  return (N > NR / 2 && t >= 1 && t <= 4) ? t : 0;
}

void gemm(const GemmParams& p);

// Computes p as its main part (blocked or small) and its tail columns when tail_columns() says so.
bool split_tail(const GemmParams& p, Path path) {
  if (MR < 12 || (path != Path::kBlocked && path != Path::kSmall)) return false;
  // Not for short rows of row-major A a multiple of 2 KiB apart: their few lines per row share
  // cache sets, so the second pass fetched A from L3 again (1 thread: 1911x178x17 with lda 2048
  // -9%, lda 512 -7%; K = 100 -1%, K = 300 with lda 1024 +31%).
  if (p.a_cs == 1 && p.K <= 128 && p.a_rs % 512 == 0) return false;
  const i64 t = tail_columns(p.N);
  if (t == 0) return false;
  GemmParams main = p, tail = p;
  main.N = p.N - t;
  tail.N = t;
  tail.b = p.b + main.N * p.b_cs;
  tail.c = p.c + main.N;
  if (p.bias) tail.bias = p.bias + main.N;
  const Path tp = choose_path(tail);
  if (tp != Path::kColVec && tp != Path::kSkinny && tp != Path::kSkinnyT) return false;
  gemm(main);
  gemm(tail);
  return true;
}

void gemm(const GemmParams& p) {
  if (p.batch <= 0 || p.M <= 0 || p.N <= 0) return;
  const Path path = choose_path(p);
  if (split_tail(p, path)) return;   // its two products size their own threads and buffers
  const double work = double(p.M) * double(p.N) * double(p.K > 0 ? p.K : 1);
  int nth = p.nthreads < 1 ? 1 : p.nthreads;
  const double total = work * double(p.batch);
  if (total < kMinWorkPerThread * nth) nth = int(total / kMinWorkPerThread) < 1 ? 1 : int(total / kMinWorkPerThread);
  i64 bpack_floats = 2 * slice_floats(round_up(b_block_cols(p.N), NR));   // two slice buffers
  const i64 gemv_floats = 2 * round_up(p.M > p.N ? p.M : p.N, 16);   // gemv partial sums (split K)
  if (bpack_floats < gemv_floats) bpack_floats = gemv_floats;
  if (path == Path::kSmall && p.b_cs != 1 && bpack_floats < round_up(p.N, NR) * p.K)   // gemm_small packs all of B
    bpack_floats = round_up(p.N, NR) * p.K;

  // The products q[b0], q[b0 + step], ... computed alone by the calling thread (a team of one:
  // no barriers, this thread's own packing buffers).
  auto alone = [&](const GemmParams& q, i64 b0, i64 step) {
    float* bpack = static_cast<float*>(workspace(kWsPackB, sizeof(float) * bpack_floats));
    i64 counter = 0, base = 0, claim = 0;
    PackSync ps{&claim, 0};
    if (q.M > 0 && q.N > 0)
      for (i64 bi = b0; bi < q.batch; bi += step) gemm_one(q, path, bi, 0, 1, bpack, &counter, base, ps);
  };
  if (nth == 1) {
    flush_denormals();
    return alone(p, 0, 1);
  }
  TeamState* const placement = team_before(nth);
  // Many small products: one per thread, each alone.
  if (p.batch >= nth && work < double(1 << 22)) {
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
    {
      enter_region(placement);
      alone(p, thread_id(), team_size());
    }
    return;
  }
  if (const int split = private_split(p, path, nth)) {   // one part of every product per thread
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
    {
      enter_region(placement);
      alone(private_part(p, split, thread_id(), team_size()), 0, 1);
    }
    return;
  }
  float* bpack = static_cast<float*>(workspace(kWsPackB, sizeof(float) * bpack_floats));
  i64 counter = 0, claim = 0;   // shared by the team
#ifdef _OPENMP
#pragma omp parallel num_threads(nth) shared(counter, claim)
#endif
  {
    enter_region(placement);
    const int tid = thread_id(), team = team_size();
    i64 base = 0;
    PackSync ps{&claim, 0};
    for (i64 bi = 0; bi < p.batch; ++bi) gemm_one(p, path, bi, tid, team, bpack, &counter, base, ps);
  }
}

}  // namespace

void register_gemm(KernelTable& t) { t.gemm = &gemm; }

}  // namespace IRF_ISA
}  // namespace irf
