// pool.cpp: placeholder, filled in by the pool kernel family.
#include "bind_util.h"

namespace cnnkit {
void bind_pool(py::module_& m) { (void)m; }
}  // namespace cnnkit
