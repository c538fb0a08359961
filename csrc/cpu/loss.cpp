// loss.cpp: placeholder, filled in by the loss kernel family.
#include "bind_util.h"

namespace cnnkit {
void bind_loss(py::module_& m) { (void)m; }
}  // namespace cnnkit
