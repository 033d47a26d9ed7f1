// attention.cpp (compiled once per ISA)
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {

void register_attention(KernelTable& t) { (void)t; }

}  // namespace IRF_ISA
}  // namespace irf
