// loss_optim.cpp: registers the loss_optim family (compiled once per ISA).  The kernels live
// one layer per file: cross_entropy.cpp, embedding.cpp, optim.cpp, dropout.cpp.
#include "kernels.h"
#include "simd.h"

namespace irf {
namespace IRF_ISA {

void register_cross_entropy(KernelTable& t);
void register_embedding(KernelTable& t);
void register_optim(KernelTable& t);
void register_dropout(KernelTable& t);

void register_loss_optim(KernelTable& t) {
  register_cross_entropy(t);
  register_embedding(t);
  register_optim(t);
  register_dropout(t);
}

}  // namespace IRF_ISA
}  // namespace irf
