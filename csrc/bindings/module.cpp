// bindings/module.cpp: the _C module: runtime configuration, then one bind_<layer>() per file.
#include <chrono>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bindings/bindings.h"

#ifndef IRF_VERSION
#define IRF_VERSION "0.0.0"
#endif
#ifndef IRF_COMPILER
#define IRF_COMPILER "unknown"
#endif

namespace py = pybind11;
using irf::i64;
using irf::bind::DenormalGuard;

namespace {

// Best FMA throughput over repeats of at least 10 ms, for `seconds` in all.
double peak_gflops(int nthreads, double seconds) {
  if (nthreads < 1) throw std::invalid_argument("peak_gflops: nthreads must be >= 1");
  py::gil_scoped_release nogil;
  DenormalGuard ftz;
  const auto& k = irf::kernels();
  k.fma_burn(1 << 16, nthreads);   // wake the threads and the clock
  i64 iters = 1 << 16;
  double best = 0.0;
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = k.fma_burn(iters, nthreads);
    const auto t1 = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(t1 - t0).count();
    if (dt < 0.01) { iters *= 4; continue; }
    if (flops / dt > best) best = flops / dt;
    if (std::chrono::duration<double>(t1 - start).count() > seconds) break;
  }
  return best / 1e9;
}

}  // namespace

// Keep freed blocks up to 32 MiB in the process heap instead of unmapping them (glibc).  By
// default glibc serves large blocks with mmap and trims the heap top on free, so every step of
// a training loop page-faults (and the kernel zeroes) its activations again: ~40k faults, ~8%
// of a 10.7M-parameter GPT step here.  Returns whether the settings were applied.
bool tune_malloc() {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
  return false;
#endif
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "ironformer C++ kernels (SIMD + OpenMP)";
  m.attr("__version__") = IRF_VERSION;
  m.attr("compiler") = IRF_COMPILER;
#ifdef IRF_HAVE_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  m.def("isa", []() { return std::string(irf::kernels().isa); }, "The ISA whose kernels are in use.");
  m.def("best_isa", []() { return std::string(irf::best_isa()); });
  m.def("isa_supported", [](const std::string& s) { return irf::isa_supported(s); });
  m.def("select_isa", [](const std::string& s) { irf::select_isa(s); }, py::arg("name"));
  m.def("get_num_threads", &irf::bind::num_threads);
  m.def("tune_malloc", &tune_malloc,
        "glibc: keep freed blocks up to 32 MiB in the heap (mmap threshold 32 MiB, trim threshold "
        "1 GiB) so repeated large temporaries do not page-fault; False where not applied.");
  m.def("set_num_threads", &irf::bind::set_num_threads, py::arg("n"));
  m.def("team_affinity", &irf::team_affinity_enabled,
        "Whether kernels keep their OpenMP team's other threads off the calling thread's CPU "
        "(csrc/team.cpp; off with IRONFORMER_TEAM_AFFINITY=0, OMP_PROC_BIND / OMP_PLACES, or "
        "without Linux / OpenMP).");
  m.def("peak_gflops", &peak_gflops, py::arg("nthreads") = 1, py::arg("seconds") = 0.2,
        "Measured fp32 FMA peak in GFLOP/s of the active ISA on nthreads threads (best of repeats).");

  irf::bind::bind_gemm(m);
  irf::bind::bind_attention(m);
  irf::bind::bind_norm_act(m);
  irf::bind::bind_loss_optim(m);
  irf::bind::bind_elementwise(m);
}
