// common.h: the vocabulary shared by every kernel and the bindings.
//
// Sizes: B batch, T sequence length, C channels, NH heads, HS head size, V vocabulary;
// for matrix multiply M, N, K as in BLAS.  All sizes and strides are int64_t, strides in
// elements (not bytes).
//
// Conventions:
//  * Argument order: outputs, saved state, inputs, parameters, sizes.
//  * Parameter gradients ACCUMULATE (+=) into their buffers; input gradients overwrite.
//  * Kernel translation units (csrc/kernels/*.cpp) are compiled once per ISA.  They must not
//    throw, must not instantiate standard containers (an inline template emitted by the AVX-512
//    object could be picked by the linker for the generic path) and must not allocate with new;
//    all validation happens in bindings.cpp, and scratch memory comes from irf::workspace().
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace irf {

using i64 = std::int64_t;

// Throws std::invalid_argument (ValueError in Python) when cond is false.
#define IRF_CHECK(cond, msg)                                   \
  do {                                                         \
    if (!(cond)) throw std::invalid_argument(std::string(msg)); \
  } while (0)

constexpr std::size_t kAlign = 64;

// 64-byte aligned allocation; defined once in dispatch.cpp (generic code).
void* aligned_alloc64(std::size_t bytes);
void aligned_free64(void* p);

// Per-thread scratch buffer, one per slot, 64-byte aligned, grown on demand and kept for the
// life of the thread (so repeated kernel calls do not page-fault fresh memory).  The pointer
// stays valid until the same thread asks for the same slot again with a larger size.
enum WorkspaceSlot : int { kWsPackA = 0, kWsPackB = 1, kWsScratch0 = 2, kWsScratch1 = 3, kWsSlots = 4 };
void* workspace(int slot, std::size_t bytes);

// Threads the kernels may use (OpenMP team size; 1 without OpenMP).
int max_threads();

// Team placement (team.cpp): team_before(nth) is called by the thread about to start an
// OpenMP region of nth threads, team_note(state, member) by every member at the region's top
// (simd.h's enter_region); together they keep the team's other threads off the caller's CPU.
struct TeamState;
TeamState* team_before(int nth);
void team_note(TeamState* state, int member);
bool team_affinity_enabled();

}  // namespace irf
