// embedding.cpp: embedding lookup and its scatter-add backward, compiled once per ISA.
//
//   ids (N,) int64 in [0, V) (validated by the binding), weight / dweight (V, C), out / dout (N, C)
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

constexpr i64 kColBlock = 16;   // one 64-byte cache line of floats: the unit of column ownership

IRF_INLINE void copy_row(float* __restrict d, const float* __restrict s, i64 c0, i64 c1) {
  i64 c = c0;
  for (; c + 2 * W <= c1; c += 2 * W) {
    vstore(d + c, vload(s + c));
    vstore(d + c + W, vload(s + c + W));
  }
  for (; c + W <= c1; c += W) vstore(d + c, vload(s + c));
  if (c < c1) vstore_part(d + c, vload_part(s + c, int(c1 - c)), int(c1 - c));
}

IRF_INLINE void add_row(float* __restrict d, const float* __restrict s, i64 c0, i64 c1) {
  i64 c = c0;
  for (; c + 2 * W <= c1; c += 2 * W) {
    vstore(d + c, vadd(vload(d + c), vload(s + c)));
    vstore(d + c + W, vadd(vload(d + c + W), vload(s + c + W)));
  }
  for (; c + W <= c1; c += W) vstore(d + c, vadd(vload(d + c), vload(s + c)));
  if (c < c1) {
    const int r = int(c1 - c);
    vstore_part(d + c, vadd(vload_part(d + c, r), vload_part(s + c, r)), r);
  }
}

// out[i, :] = weight[ids[i], :]
void embedding_forward(float* out, const i64* ids, const float* weight, i64 N, i64 C, int nthreads) {
  const int nteam = (N * C >= (1 << 18) && nthreads > 1) ? nthreads : 1;
  TeamState* const placement = team_before(nteam);
#ifdef _OPENMP
#pragma omp parallel num_threads(nteam)
#endif
  {
    enter_region(placement);
    i64 lo, hi;
    split_range(N, thread_id(), team_size(), lo, hi);
    for (i64 i = lo; i < hi; ++i) copy_row(out + i * C, weight + ids[i] * C, 0, C);
  }
}

// dweight[ids[i], :] += dout[i, :] for i = 0..N-1 in order (differentiates out[i] = weight[ids[i]]).
// Threads own disjoint column ranges (whole cache lines) of every row of dweight, and each walks
// all ids in order: no atomics, no false sharing, and every element receives its additions in
// the same order whatever the thread count (bitwise deterministic).
void embedding_backward(float* dweight, const float* dout, const i64* ids, i64 N, i64 C, int nthreads) {
  const i64 nblocks = ceil_div(C, kColBlock);
  int nth = nthreads < 1 ? 1 : nthreads;
  if (nth > nblocks) nth = int(nblocks);
  if (N * C < (1 << 18)) nth = 1;
  TeamState* const placement = team_before(nth);
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
  {
    enter_region(placement);
    i64 b0, b1;
    split_range(nblocks, thread_id(), team_size(), b0, b1);
    const i64 c0 = b0 * kColBlock, c1 = (b1 * kColBlock < C) ? b1 * kColBlock : C;
    if (c0 < c1)
      for (i64 i = 0; i < N; ++i) add_row(dweight + ids[i] * C, dout + i * C, c0, c1);
  }
}

}  // namespace

void register_embedding(KernelTable& t) {
  t.embedding_forward = &embedding_forward;
  t.embedding_backward = &embedding_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
