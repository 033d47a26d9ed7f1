// bindings/elementwise.cpp
#include "bindings/bindings.h"

namespace irf {
namespace bind {

void bind_elementwise(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace irf
