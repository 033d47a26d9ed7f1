// cross_entropy.cpp: cross-entropy loss fused with the softmax, compiled once per ISA.
//
//   logits (N, V) row-major, targets (N,) int64 (validated by the binding: ignore_index or in
//   [0, V)), lse (N,), row_loss (N,) double, dlogits (N, V).
//
// Forward reads each row once from memory: the row is walked in L1-sized chunks; for each chunk
// the per-lane maximum is found (the chunk is now in L1), the running per-lane sum is rescaled
// once to the new maximum and the chunk's exp(x - max) are summed in fresh accumulators that
// are then added to the running sum (short float32 sums, so rounding stays ~1e-7 relative).
// Backward recomputes softmax from logits and the saved lse in one streaming pass: no softmax
// buffer is ever stored.
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

constexpr i64 kChunk = 1024;            // floats per chunk (4 KiB: stays in L1 between the passes)
constexpr i64 kMinParallel = 1 << 17;   // logits below which one thread is faster than two
// dlogits larger than this (floats) are written with streaming stores: they cannot stay in
// cache anyway, and a streaming store skips the read-for-ownership of every destination line.
constexpr i64 kStreamMin = i64(1) << 22;
constexpr float kNegInf = -__builtin_inff();

// pad[W - n + lane] is 0 for lane < n and -inf for lane >= n: adding vload(pad + W - n) to a
// vload_part of n values makes the missing lanes -inf (neutral for max, exp(-inf) = 0).
struct TailPad {
  alignas(64) float v[2 * W];
  TailPad() {
    for (int i = 0; i < W; ++i) { v[i] = 0.f; v[W + i] = kNegInf; }
  }
};

IRF_INLINE vf load_tail(const float* p, int n, const float* pad) {
  return vadd(vload_part(p, n), vload(pad + W - n));
}

// logsumexp of x[0:V] (V >= 1).
float row_logsumexp(const float* x, i64 V, const float* pad) {
  // Running per-lane max m and per-lane sum s of exp(x - m).  m starts at the lowest finite
  // float so the first rescale exp(m_old - m_new) is exp(-huge) = 0, never exp(-inf + inf).
  vf m = vset1(-3.4028234663852886e38f), s = vzero();
  for (i64 c0 = 0; c0 < V; c0 += kChunk) {
    const i64 len = (V - c0 < kChunk) ? V - c0 : kChunk;
    const float* p = x + c0;
    const i64 nv = len / W;            // full vectors in this chunk
    const int tail = int(len - nv * W);
    // pass 1: per-lane max of the chunk
    vf m0 = m, m1 = m, m2 = m, m3 = m;
    i64 k = 0;
    for (; k + 4 <= nv; k += 4) {
      m0 = vmax(m0, vload(p + k * W));
      m1 = vmax(m1, vload(p + (k + 1) * W));
      m2 = vmax(m2, vload(p + (k + 2) * W));
      m3 = vmax(m3, vload(p + (k + 3) * W));
    }
    for (; k < nv; ++k) m0 = vmax(m0, vload(p + k * W));
    vf xt = vzero();
    if (tail) { xt = load_tail(p + nv * W, tail, pad); m1 = vmax(m1, xt); }
    const vf mn = vmax(vmax(m0, m1), vmax(m2, m3));
    // pass 2 (from L1): s = s * exp(m - mn) + sum exp(x - mn)
    vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
    k = 0;
    for (; k + 4 <= nv; k += 4) {
      s0 = vadd(s0, vexp_nonpos(vsub(vload(p + k * W), mn)));
      s1 = vadd(s1, vexp_nonpos(vsub(vload(p + (k + 1) * W), mn)));
      s2 = vadd(s2, vexp_nonpos(vsub(vload(p + (k + 2) * W), mn)));
      s3 = vadd(s3, vexp_nonpos(vsub(vload(p + (k + 3) * W), mn)));
    }
    for (; k < nv; ++k) s0 = vadd(s0, vexp_nonpos(vsub(vload(p + k * W), mn)));
    if (tail) s1 = vadd(s1, vexp_nonpos(vsub(xt, mn)));
    s = vfma(s, vexp_nonpos(vsub(m, mn)), vadd(vadd(s0, s1), vadd(s2, s3)));
    m = mn;
  }
  // Combine the lanes: lse = M + log(sum_l s_l exp(m_l - M)).
  const float M = vreduce_max(m);
  if (M != M) return M;                                   // NaN logits
  if (M == __builtin_inff()) return M;                    // +inf logit: lse = +inf
  if (!(M > -3.4028234663852886e38f)) return kNegInf;      // every logit -inf
  const float S = vreduce_add(vmul(s, vexp_nonpos(vsub(m, vset1(M)))));
  return M + __builtin_logf(S);
}

void cross_entropy_forward(float* lse, double* row_loss, const float* logits, const i64* targets, i64 N,
                           i64 V, i64 ignore_index, int nthreads) {
  const TailPad pad;
  const int nteam = (N > 1 && N * V >= kMinParallel && nthreads > 1) ? nthreads : 1;
  TeamState* const placement = team_before(nteam);
#ifdef _OPENMP
#pragma omp parallel num_threads(nteam)
#endif
  {
    enter_region(placement);
    i64 lo, hi;
    split_range(N, thread_id(), team_size(), lo, hi);
    for (i64 n = lo; n < hi; ++n) {
      const float* x = logits + n * V;
      const float l = row_logsumexp(x, V, pad.v);
      lse[n] = l;
      const i64 t = targets[n];
      row_loss[n] = (t == ignore_index) ? 0.0 : double(l) - double(x[t]);   // -log softmax(x)[t]
    }
  }
}

// dlogits[n, j] = scale * (exp(x[n, j] - lse[n]) - [j == t_n]), zero rows where t_n is ignored.
// Differentiates row_loss[n] = lse[n] - x[n, t_n] above: d lse / d x_j = softmax_j,
// d x_t / d x_j = [j == t]; scale = dloss / count (the mean).
void cross_entropy_backward(float* dlogits, const float* lse, const float* logits, const i64* targets,
                            float scale, i64 N, i64 V, i64 ignore_index, int nthreads) {
  const int nteam = (N * V >= kMinParallel && nthreads > 1) ? nthreads : 1;
  TeamState* const placement = team_before(nteam);
#ifdef _OPENMP
#pragma omp parallel num_threads(nteam)
#endif
  {
    enter_region(placement);
    const int tid = thread_id(), nth = team_size();
    const bool stream = N * V >= kStreamMin;
    // Split (row, column-block) work so that few rows still use every thread.
    const i64 cb = ceil_div(V, 8192 / W * W);   // column blocks per row
    const i64 bl = ceil_div(V, cb);             // block length
    i64 lo, hi;
    split_range(N * cb, tid, nth, lo, hi);
    for (i64 w = lo; w < hi; ++w) {
      const i64 n = w / cb, j0 = (w % cb) * bl;
      const i64 j1 = (j0 + bl < V) ? j0 + bl : V;
      const float* x = logits + n * V;
      float* d = dlogits + n * V;
      const i64 t = targets[n];
      if (t == ignore_index) {
        for (i64 j = j0; j < j1; ++j) d[j] = 0.f;
        continue;
      }
      const vf l = vset1(lse[n]), sc = vset1(scale);
      i64 j = j0;
      if (stream) {
        // scalar head up to a vector-aligned destination, then aligned streaming stores
        while (j < j1 && (reinterpret_cast<std::uintptr_t>(d + j) % (W * sizeof(float))) != 0) {
          const int r = 1;
          vstore_part(d + j, vmul(vexp_nonpos(vsub(vload_part(x + j, r), l)), sc), r);
          ++j;
        }
        for (; j + 2 * W <= j1; j += 2 * W) {
          vstream(d + j, vmul(vexp_nonpos(vsub(vload(x + j), l)), sc));
          vstream(d + j + W, vmul(vexp_nonpos(vsub(vload(x + j + W), l)), sc));
        }
      }
      for (; j + 2 * W <= j1; j += 2 * W) {
        vstore(d + j, vmul(vexp_nonpos(vsub(vload(x + j), l)), sc));
        vstore(d + j + W, vmul(vexp_nonpos(vsub(vload(x + j + W), l)), sc));
      }
      for (; j + W <= j1; j += W) vstore(d + j, vmul(vexp_nonpos(vsub(vload(x + j), l)), sc));
      if (j < j1) {
        const int r = int(j1 - j);
        vstore_part(d + j, vmul(vexp_nonpos(vsub(vload_part(x + j, r), l)), sc), r);
      }
      if (stream) _mm_sfence();   // the target fix-up below reads what was just streamed
      if (t >= j0 && t < j1) d[t] -= scale;     // - onehot(t) * scale
    }
  }
}

}  // namespace

void register_cross_entropy(KernelTable& t) {
  t.cross_entropy_forward = &cross_entropy_forward;
  t.cross_entropy_backward = &cross_entropy_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
