// dispatch.cpp: CPU + OS feature detection, the active kernel table, and the shared
// allocation helpers.  Compiled with baseline x86-64 flags only.
#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace irf {
namespace {

struct Features { bool avx2 = false, fma = false, avx512 = false; };

unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

Features detect() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;            // XMM + YMM state saved by the OS
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  f.fma = fma && os_ymm;
  f.avx2 = avx2 && f.fma;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

KernelTable g_table{};
bool g_table_ready = false;

void fill(const std::string& name, KernelTable& t) {
  if (name == "generic") generic::fill_table(t);
  else if (name == "avx2") avx2::fill_table(t);
  else if (name == "avx512") avx512::fill_table(t);
}

}  // namespace

bool isa_supported(const std::string& name) {
  if (name == "generic") return true;
  if (name == "avx2") return features().avx2;
  if (name == "avx512") return features().avx512;
  return false;
}

const char* best_isa() {
  if (features().avx512) return "avx512";
  if (features().avx2) return "avx2";
  return "generic";
}

void select_isa(const std::string& name) {
  if (name != "generic" && name != "avx2" && name != "avx512")
    throw std::invalid_argument("unknown ISA '" + name + "': expected one of generic, avx2, avx512");
  if (!isa_supported(name))
    throw std::runtime_error("ISA '" + name + "' is not supported by this CPU/OS (best available: " +
                             best_isa() + ")");
  KernelTable t{};
  fill(name, t);
  g_table = t;
  g_table_ready = true;
}

const KernelTable& kernels() {
  if (!g_table_ready) select_isa(best_isa());
  return g_table;
}

void* aligned_alloc64(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) bytes = kAlign;
  if (posix_memalign(&p, kAlign, (bytes + kAlign - 1) / kAlign * kAlign) != 0) throw std::bad_alloc();
  return p;
}

void aligned_free64(void* p) { std::free(p); }

namespace {
struct Workspace {
  void* ptr[kWsSlots] = {};
  std::size_t size[kWsSlots] = {};
  ~Workspace() { for (auto* p : ptr) aligned_free64(p); }
};
thread_local Workspace t_ws;
}  // namespace

void* workspace(int slot, std::size_t bytes) {
  Workspace& w = t_ws;
  if (bytes > w.size[slot]) {
    aligned_free64(w.ptr[slot]);
    w.ptr[slot] = nullptr;
    w.size[slot] = 0;
    const std::size_t grown = bytes + bytes / 4;
    w.ptr[slot] = aligned_alloc64(grown);
    w.size[slot] = grown;
  }
  return w.ptr[slot];
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace irf
