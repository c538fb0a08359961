// im2col.cpp: placeholder, filled in by the im2col kernel family.
#include "bind_util.h"

namespace cnnkit {
void bind_im2col(py::module_& m) { (void)m; }
}  // namespace cnnkit
