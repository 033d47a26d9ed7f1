// bindings/loss_optim.cpp
#include "bindings/bindings.h"

namespace irf {
namespace bind {

void bind_loss_optim(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace irf
