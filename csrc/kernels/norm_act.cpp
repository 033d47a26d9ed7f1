// norm_act.cpp (compiled once per ISA)
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {

void register_norm_act(KernelTable& t) { (void)t; }

}  // namespace IRF_ISA
}  // namespace irf
