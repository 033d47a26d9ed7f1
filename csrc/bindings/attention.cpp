// bindings/attention.cpp
#include "bindings/bindings.h"

namespace irf {
namespace bind {

void bind_attention(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace irf
