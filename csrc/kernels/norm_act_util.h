// norm_act_util.h: loops shared by the norm_act kernel files (layernorm, activations, softmax,
// bias_add).  Included only by csrc/kernels/*.cpp (compiled once per ISA).
#pragma once
#include <type_traits>

#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

// Runs body(lo, hi) over [0, n) split into contiguous ranges, one per thread.  Uses fewer
// threads than nthreads when there are fewer than min_per_thread items per thread (waking a
// thread costs a few microseconds).  Every item is computed the same way whatever the split,
// so results never depend on the thread count.
template <class F>
void parallel_for(i64 n, i64 min_per_thread, int nthreads, F&& body) {
  if (n <= 0) return;
  i64 nth = nthreads < 1 ? 1 : nthreads;
  const i64 cap = n / (min_per_thread < 1 ? 1 : min_per_thread);
  if (nth > cap) nth = cap < 1 ? 1 : cap;
  if (nth == 1) {
    flush_denormals();
    body(i64(0), n);
    return;
  }
  TeamState* const placement = team_before(int(nth));
#ifdef _OPENMP
#pragma omp parallel num_threads(int(nth))
#endif
  {
    enter_region(placement);
    i64 lo, hi;
    split_range(n, thread_id(), team_size(), lo, hi);
    if (lo < hi) body(lo, hi);
  }
}

// with_flags(f, b...) calls f(std::bool_constant<b>{}...): run-time switches (streaming stores,
// weight given, ...) become template arguments of a row kernel, one instantiation per combination.
template <class F>
IRF_INLINE void with_flags(F&& f) { f(); }
template <class F, class... B>
IRF_INLINE void with_flags(F&& f, bool b, B... rest) {
  if (b) with_flags([&](auto... c) { f(std::true_type{}, c...); }, rest...);
  else with_flags([&](auto... c) { f(std::false_type{}, c...); }, rest...);
}

// Row prefetching.  The row-wise kernels (layernorm, softmax, log-softmax, forward and backward)
// read a row from memory in a first pass, then work on it in L1 in one or two more passes that
// request no new lines, so the hardware prefetcher stalls and the next row would start with
// cache misses.  Their last pass goes through for_row_vectors, which prefetches a later row as it
// goes: step(k, W) over the full vectors of a row of C floats, then step(k, r) on a tail of
// r < W, with one prefetch of pf_a (and of pf_b when not null; pf_a null: none) per line of this
// row, spread over the pass rather than bunched at the row start.  Forward kernels prefetch the
// input row kRowAhead ahead, softmax backward kBwdRowAhead, layernorm backward the next rows.
// Measured on Zen 3, 2048x768, inputs cold, A/B in both orders: layernorm backward +30% /
// softmax backward +18% (1 thread) over no prefetch, where a whole-row prefetch at the row start
// was 5-20% slower than none; layernorm forward +13% / softmax forward +13% over the whole-row
// prefetch at the row start; 2 rows ahead beat 1 (+9%) and 3 (-0..5%) for layernorm forward.
constexpr i64 kRowAhead = 2;
// Softmax / log-softmax backward: 2 rows ahead rather than the next one, on an AVX-512 Zen 5
// (2048x768, A/B in both orders): +6-13% at 1 and 2 threads with inputs in L3, +4-11% at 1
// thread beyond it; layernorm backward measured neutral (-4..+6%) and keeps the next row.
constexpr i64 kBwdRowAhead = 2;
// R > 1: the pass covers R consecutive rows at once (layernorm backward), and R rows of each
// input from pf_a / pf_b on are prefetched, pf_a's and pf_b's line of row q after row q - 1's.
template <int R = 1, class Step>
IRF_INLINE void for_row_vectors(i64 C, const float* pf_a, const float* pf_b, Step&& step) {
  i64 j = 0;
  if (pf_a) {
    for (; j + kLineFloats <= C; j += kLineFloats) {
      for (int q = 0; q < R; ++q) {
        __builtin_prefetch(pf_a + q * C + j, 0, 3);
        if (pf_b) __builtin_prefetch(pf_b + q * C + j, 0, 3);
      }
      for (i64 k = j; k < j + kLineFloats; k += W) step(k, W);
    }
  }
  for (; j + W <= C; j += W) step(j, W);
  if (j < C) step(j, int(C - j));
}

// Elements per parallel block of the elementwise kernels, and the minimum work per thread.
constexpr i64 kBlock = 256;
constexpr i64 kMinElemsPerThread = 1 << 14;

// body(lo, hi) over element ranges of n that are whole blocks of kBlock (except the last).
template <class F>
void parallel_elems(i64 n, int nthreads, F&& body) {
  const i64 nb = ceil_div(n, kBlock);
  parallel_for(nb, kMinElemsPerThread / kBlock, nthreads, [&](i64 b0, i64 b1) {
    body(b0 * kBlock, b1 * kBlock < n ? b1 * kBlock : n);
  });
}

// Rows per thread so that each thread gets at least kMinElemsPerThread elements.
IRF_INLINE i64 min_rows(i64 C) { return C >= kMinElemsPerThread ? 1 : kMinElemsPerThread / (C < 1 ? 1 : C); }

// Deterministic column sums over rows: the N rows are cut into row_chunks(N) fixed chunks
// (chunk c owns split_range(N, c, nchunks) -- a function of N only, never of the thread
// count); each chunk sums its rows in row order into its own partial vector, and the partials
// are then added in chunk order.  So sums are bitwise identical for any number of threads.
constexpr i64 kRowChunks = 64;
IRF_INLINE i64 row_chunks(i64 N) { return N < kRowChunks ? N : kRowChunks; }

// out[j] (+)= sum over c = 0..nch-1 (in order) of part[c * ld + j], j < C.
inline void reduce_chunks(float* out, const float* part, i64 nch, i64 ld, i64 C, bool accumulate, int nthreads) {
  const i64 nb = ceil_div(C, W);
  parallel_for(nb, (kMinElemsPerThread / W) / (nch < 1 ? 1 : nch) + 1, nthreads, [&](i64 b0, i64 b1) {
    for (i64 b = b0; b < b1; ++b) {
      const i64 j = b * W;
      const int r = C - j < W ? int(C - j) : W;
      vf s = r == W ? (accumulate ? vload(out + j) : vzero()) : (accumulate ? vload_part(out + j, r) : vzero());
      for (i64 c = 0; c < nch; ++c) {
        const float* p = part + c * ld + j;
        s = vadd(s, r == W ? vload(p) : vload_part(p, r));
      }
      if (r == W) vstore(out + j, s);
      else vstore_part(out + j, s, r);
    }
  });
}

}  // namespace
}  // namespace IRF_ISA
}  // namespace irf
