// team.cpp: where the OpenMP team's threads run (generic code, compiled once).
//
// Why: with libgomp's default wait policy a thread that finds nothing to do spins for
// GOMP_SPINCOUNT (300k) pause loops, a few milliseconds on Zen, before it sleeps.  When the
// calling thread wakes its team after the cores idled (>= 20-100 ms here), Linux sometimes
// queues a worker on the caller's own CPU (in a VM the idle vCPU looks preempted, so the
// scheduler does not pick it); the caller computes its share and then spins at the next
// barrier while the worker waits behind it until the scheduler tick.  Measured on the 2-vCPU
// Zen 5 VM: an empty-bodied 2-thread region after a 0.2 s pause took 4-8 ms (the worker started
// 1.4-3.9 ms late, on the caller's CPU), 384x768 @ 768x512 at 2 threads 10.5-11 ms against
// 0.7 ms back to back (numpy, pthreads spinning with sched_yield: ~1 ms).  OMP_PROC_BIND=true
// cured it (0.9 ms) but binds the calling thread, and with it every thread it later starts
// (numpy's, torch's), to one CPU.  So instead the caller keeps its team's other threads off
// its own CPU: before a region it reads its CPU (sched_getcpu, no system call) and, when that
// changed since the last region, sets each known worker's affinity to the caller's allowed
// CPUs minus that one (a system call per worker, only then).  Workers report their thread ids
// at the start of each region (team_note), so the first region of a new team runs unplaced.
// Left alone: OpenMP binding asked for by the user (OMP_PROC_BIND / OMP_PLACES), callers
// allowed on one CPU, non-Linux systems, and IRONFORMER_TEAM_AFFINITY=0.
#include "common.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace irf {

struct TeamState {
  static constexpr int kSlots = 64;            // team members beyond this are left unplaced
  std::atomic<long> tid[kSlots] = {};          // OS thread id of member i (0: not known yet)
  int kept_off[kSlots] = {};                   // CPU member i was last kept off (-1: none)
#if defined(__linux__)
  cpu_set_t allowed;                           // the calling thread's CPUs, at its first region
  bool have_allowed = false;
#endif
  TeamState() {
    for (int& c : kept_off) c = -1;
  }
};

namespace {

bool placement_enabled() {
#if defined(__linux__) && defined(_OPENMP)
  const char* e = std::getenv("IRONFORMER_TEAM_AFFINITY");
  if (e && std::strcmp(e, "0") == 0) return false;
  return omp_get_proc_bind() == omp_proc_bind_false;
#else
  return false;
#endif
}

}  // namespace

bool team_affinity_enabled() {
  static const bool on = placement_enabled();
  return on;
}

TeamState* team_before(int nth) {
  if (nth < 2 || !team_affinity_enabled()) return nullptr;
#if defined(__linux__)
  thread_local TeamState st;
  if (!st.have_allowed) {
    CPU_ZERO(&st.allowed);
    if (sched_getaffinity(0, sizeof(cpu_set_t), &st.allowed) != 0) return nullptr;
    st.have_allowed = true;
  }
  const int cpu = sched_getcpu();
  if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &st.allowed) || CPU_COUNT(&st.allowed) < 2) return &st;
  const int n = nth < TeamState::kSlots ? nth : TeamState::kSlots;
  for (int i = 1; i < n; ++i) {
    const long t = st.tid[i].load(std::memory_order_relaxed);
    if (t == 0 || st.kept_off[i] == cpu) continue;
    cpu_set_t m = st.allowed;
    CPU_CLR(cpu, &m);
    if (sched_setaffinity(pid_t(t), sizeof(cpu_set_t), &m) == 0) {
      st.kept_off[i] = cpu;
    } else {   // the thread is gone, or the CPUs allowed changed: re-read both
      st.tid[i].store(0, std::memory_order_relaxed);
      st.have_allowed = false;
    }
  }
  return &st;
#else
  return nullptr;
#endif
}

void team_note(TeamState* st, int member) {
#if defined(__linux__)
  if (!st || member <= 0 || member >= TeamState::kSlots) return;
  thread_local const long self = long(syscall(SYS_gettid));
  if (st->tid[member].load(std::memory_order_relaxed) != self) {
    st->kept_off[member] = -1;   // a new thread in this slot: place it before the next region
    st->tid[member].store(self, std::memory_order_relaxed);
  }
#else
  (void)st;
  (void)member;
#endif
}

}  // namespace irf
