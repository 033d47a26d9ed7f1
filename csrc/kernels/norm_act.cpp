// norm_act.cpp (compiled once per ISA): registers the norm_act family, whose kernels live in
// layernorm.cpp, activations.cpp, softmax.cpp and bias_add.cpp (shared loops: norm_act_util.h).
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {

void register_layernorm(KernelTable& t);
void register_activations(KernelTable& t);
void register_softmax(KernelTable& t);
void register_bias_add(KernelTable& t);

void register_norm_act(KernelTable& t) {
  register_layernorm(t);
  register_activations(t);
  register_softmax(t);
  register_bias_add(t);
}

}  // namespace IRF_ISA
}  // namespace irf
