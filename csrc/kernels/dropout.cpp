// dropout.cpp: dropout with a counter-based hash RNG, compiled once per ISA.
//
//   x / out / dout / dx: (n,) flat.  Element i is kept iff
//     (dropout_hash(lo32(offset + i), k1, k2) >> 8) >= p24,  (k1, k2) = dropout_keys(seed, hi32(offset + i))
//   (the hash is defined once, in the loss_optim section of kernels.h, namespace irf::ref), and kept elements are scaled by 1/(1-p).  The mask is a pure function of
//   (seed, offset, i): independent of the thread count, and backward regenerates it instead of
//   reading a stored mask.
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

using DropoutParams = KernelTable::DropoutParams;

constexpr i64 kMinParallel = 1 << 14;

// out[i] = keep(i) ? x[i] * scale : 0 for i in [lo, hi), where the counter is offset + i.
// Written as a plain loop over 32-bit integer arithmetic so the compiler vectorizes the hash
// with the ISA's integer SIMD (mullo / shifts / compares).
void apply_mask(float* __restrict out, const float* __restrict x, const DropoutParams& d, i64 lo, i64 hi) {
  i64 i = lo;
  while (i < hi) {
    const std::uint64_t c0 = d.offset + std::uint64_t(i);
    const std::uint32_t hi32 = std::uint32_t(c0 >> 32), lo32 = std::uint32_t(c0);
    // run until the high word of the counter changes (every 2^32 counters)
    const std::uint64_t room = (std::uint64_t(1) << 32) - lo32;
    const i64 len = (std::uint64_t(hi - i) < room) ? hi - i : i64(room);
    std::uint32_t k1, k2;
    ref::dropout_keys(d.seed, hi32, k1, k2);
    const std::int32_t p24 = std::int32_t(d.p24);
    const float sc = d.scale;
    float* __restrict o = out + i;
    const float* __restrict xs = x + i;
    for (i64 j = 0; j < len; ++j) {
      const std::uint32_t h = ref::dropout_hash(lo32 + std::uint32_t(j), k1, k2);
      o[j] = std::int32_t(h >> 8) >= p24 ? xs[j] * sc : 0.f;
    }
    i += len;
  }
}

void run(float* out, const float* x, const DropoutParams& d, i64 n, int nthreads) {
  const int nth = (nthreads < 1 || n < kMinParallel) ? 1 : nthreads;
  TeamState* const placement = team_before(nth);
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
  {
    enter_region(placement);
    i64 lo, hi;
    split_range(ceil_div(n, 16), thread_id(), team_size(), lo, hi);
    lo *= 16;
    hi = (hi * 16 < n) ? hi * 16 : n;
    apply_mask(out, x, d, lo, hi);
  }
}

// out = x * mask * scale
void dropout_forward(float* out, const float* x, const DropoutParams& d, i64 n, int nthreads) {
  run(out, x, d, n, nthreads);
}

// dx = dout * mask * scale: differentiates out = x * mask * scale, with the mask regenerated
// from (seed, offset) exactly as forward made it.
void dropout_backward(float* dx, const float* dout, const DropoutParams& d, i64 n, int nthreads) {
  run(dx, dout, d, n, nthreads);
}

}  // namespace

void register_dropout(KernelTable& t) {
  t.dropout_forward = &dropout_forward;
  t.dropout_backward = &dropout_backward;
}

}  // namespace IRF_ISA
}  // namespace irf
