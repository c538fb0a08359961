// optimizer.cu: the CUDA twin of csrc/cpu/optimizer.cpp: one fused, in-place update kernel per
// optimizer step and variable (SGD/momentum/Nesterov, Adam/AdamW/AMSGrad, RMSprop centered/with
// momentum) instead of a dozen CuPy elementwise launches: a grid-stride loop over the flat variable,
// each thread reading grad, var and the slots of its elements and writing var and the slots. The
// options are template flags; the scalars are rounded to T on the host. The per-element work is in
// optimizer.cuh, which the host test module cnnkit._cuda_host also runs. GPU unverified.
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/optimizer.cuh"

namespace cnnkit {
namespace cuda {

namespace {

template <bool kMomentum, bool kNesterov, class T>
__global__ void sgd_update_kernel(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ mom, index_t n,
                                  SgdScalars<T> s) {
    CNNKIT_GRID_LOOP(i, n) sgd_element<kMomentum, kNesterov>(w, g, mom, s, i);
}

template <bool kAmsgrad, class T>
__global__ void adam_update_kernel(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m,
                                   T* __restrict__ v, T* __restrict__ v_hat, index_t n, AdamScalars<T> s) {
    CNNKIT_GRID_LOOP(i, n) adam_element<kAmsgrad>(w, g, m, v, v_hat, s, i);
}

template <bool kCentered, bool kMomentum, class T>
__global__ void rmsprop_update_kernel(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ vel,
                                      T* __restrict__ mom, T* __restrict__ avg, index_t n, RmspropScalars<T> s) {
    CNNKIT_GRID_LOOP(i, n) rmsprop_element<kCentered, kMomentum>(w, g, vel, mom, avg, s, i);
}

}  // namespace

template <class T>
void sgd_update(T* var, const T* grad, T* momentum, index_t n, const SgdStep& s, Stream stream) {
    if (n == 0) return;
    const SgdScalars<T> sc = scalars_of<T>(s);
    with_flags(momentum != nullptr, s.nesterov, [&](auto has_momentum, auto nesterov) {
        constexpr bool kM = decltype(has_momentum)::value, kN = decltype(nesterov)::value;
        CNNKIT_LAUNCH("sgd_update_kernel", (sgd_update_kernel<kM, kN, T>), grid_for(n), kThreads, 0,
                      as_stream(stream), var, grad, momentum, n, sc);
    });
}

template <class T>
void adam_update(T* var, const T* grad, T* m, T* v, T* v_hat, index_t n, const AdamStep& s, Stream stream) {
    if (n == 0) return;
    const AdamScalars<T> sc = scalars_of<T>(s);
    if (v_hat)
        CNNKIT_LAUNCH("adam_update_kernel", (adam_update_kernel<true, T>), grid_for(n), kThreads, 0,
                      as_stream(stream), var, grad, m, v, v_hat, n, sc);
    else
        CNNKIT_LAUNCH("adam_update_kernel", (adam_update_kernel<false, T>), grid_for(n), kThreads, 0,
                      as_stream(stream), var, grad, m, v, v_hat, n, sc);
}

template <class T>
void rmsprop_update(T* var, const T* grad, T* velocity, T* momentum, T* average_grad, index_t n,
                    const RmspropStep& s, Stream stream) {
    if (n == 0) return;
    const RmspropScalars<T> sc = scalars_of<T>(s);
    with_flags(average_grad != nullptr, momentum != nullptr, [&](auto centered, auto has_momentum) {
        constexpr bool kC = decltype(centered)::value, kM = decltype(has_momentum)::value;
        CNNKIT_LAUNCH("rmsprop_update_kernel", (rmsprop_update_kernel<kC, kM, T>), grid_for(n), kThreads, 0,
                      as_stream(stream), var, grad, velocity, momentum, average_grad, n, sc);
    });
}

CNNKIT_INSTANTIATE_OPTIMIZER(float)
CNNKIT_INSTANTIATE_OPTIMIZER(double)

}  // namespace cuda
}  // namespace cnnkit
