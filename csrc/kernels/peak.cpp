// peak.cpp: an FMA throughput loop that measures this CPU's fp32 peak (for "% of peak"
// figures in benchmarks and progress bars).  12 independent accumulator chains per thread
// hide the FMA latency on every ISA.
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {
namespace {

// Runs `iters` rounds of 12 vector FMAs on each of nthreads threads; returns the flop count.
double fma_burn(i64 iters, int nthreads) {
  double flops = 0.0;
  TeamState* const placement = team_before(nthreads);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : flops)
#endif
  {
    enter_region(placement);
    vf acc[12];
    const vf m = vset1(0.999999f), a = vset1(1e-7f);
    for (int i = 0; i < 12; ++i) acc[i] = vset1(float(i));
    for (i64 it = 0; it < iters; ++it) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = vfma(acc[i], m, a);
    }
    vf s = vzero();
    for (int i = 0; i < 12; ++i) s = vadd(s, acc[i]);
    volatile float sink = vreduce_add(s);
    (void)sink;
    flops += double(iters) * 12.0 * W * 2.0;
  }
  return flops;
}

}  // namespace

void register_peak(KernelTable& t) { t.fma_burn = &fma_burn; }

}  // namespace IRF_ISA
}  // namespace irf
