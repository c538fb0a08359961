// activation.cpp: placeholder, filled in by the activation kernel family.
#include "bind_util.h"

namespace cnnkit {
void bind_activation(py::module_& m) { (void)m; }
}  // namespace cnnkit
