// bind_kernels.h: every kernel family's bindings, for one device: cnnkit._core (bind_cpu.cpp) and
// cnnkit._cuda (bind_cuda.cpp) both call bind_kernels, so the twin modules bind the same functions.
#pragma once

#include "bind_activation.h"
#include "bind_array.h"
#include "bind_bias.h"
#include "bind_conv_direct.h"
#include "bind_im2col.h"
#include "bind_loss.h"
#include "bind_norm.h"
#include "bind_optimizer.h"
#include "bind_pool.h"

namespace cnnkit {

template <class D>
void bind_kernels(py::module_& m) {
    bind_im2col<D>(m);
    bind_bias<D>(m);
    bind_conv_direct<D>(m);
    bind_pool<D>(m);
    bind_activation<D>(m);
    bind_norm<D>(m);
    bind_loss<D>(m);
    bind_optimizer<D>(m);
}

}  // namespace cnnkit
