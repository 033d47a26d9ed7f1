// bindings/norm_act.cpp
#include "bindings/bindings.h"

namespace irf {
namespace bind {

void bind_norm_act(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace irf
