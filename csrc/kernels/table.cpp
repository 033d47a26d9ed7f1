// table.cpp: fills this ISA's KernelTable.  Each kernel file exports one register_<layer>().
#include "kernels.h"

#define IRF_STR2(x) #x
#define IRF_STR(x) IRF_STR2(x)

namespace irf {
namespace IRF_ISA {

void register_gemm(KernelTable& t);
void register_peak(KernelTable& t);
void register_attention(KernelTable& t);
void register_norm_act(KernelTable& t);
void register_loss_optim(KernelTable& t);
void register_elementwise(KernelTable& t);

void fill_table(KernelTable& t) {
  t.isa = IRF_STR(IRF_ISA);
  register_gemm(t);
  register_peak(t);
  register_attention(t);
  register_norm_act(t);
  register_loss_optim(t);
  register_elementwise(t);
}

}  // namespace IRF_ISA
}  // namespace irf
