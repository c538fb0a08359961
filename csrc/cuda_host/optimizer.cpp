// optimizer.cpp (cnnkit._cuda_host, test-only): csrc/cuda/optimizer.cu's launchers on the CPU, one
// call of the kernels' per-element functions (cuda/optimizer.cuh) per element, with the kernels'
// 64-bit flat index.
#include "cuda/optimizer.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {

template <class T>
void sgd_update(T* var, const T* grad, T* momentum, index_t n, const SgdStep& s, Stream stream) {
    const auto sc = cuda::scalars_of<T>(s);
    with_index_type(stream, false, "sgd_update", [&](auto) {
        cuda::with_flags(momentum != nullptr, s.nesterov, [&](auto has_momentum, auto nesterov) {
            for (index_t i = 0; i < n; ++i)
                cuda::sgd_element<decltype(has_momentum)::value, decltype(nesterov)::value>(var, grad, momentum, sc, i);
        });
    });
}

template <class T>
void adam_update(T* var, const T* grad, T* m, T* v, T* v_hat, index_t n, const AdamStep& s, Stream stream) {
    const auto sc = cuda::scalars_of<T>(s);
    with_index_type(stream, false, "adam_update", [&](auto) {
        for (index_t i = 0; i < n; ++i) {
            if (v_hat)
                cuda::adam_element<true>(var, grad, m, v, v_hat, sc, i);
            else
                cuda::adam_element<false>(var, grad, m, v, v_hat, sc, i);
        }
    });
}

template <class T>
void rmsprop_update(T* var, const T* grad, T* velocity, T* momentum, T* average_grad, index_t n,
                    const RmspropStep& s, Stream stream) {
    const auto sc = cuda::scalars_of<T>(s);
    with_index_type(stream, false, "rmsprop_update", [&](auto) {
        cuda::with_flags(average_grad != nullptr, momentum != nullptr, [&](auto centered, auto has_momentum) {
            for (index_t i = 0; i < n; ++i)
                cuda::rmsprop_element<decltype(centered)::value, decltype(has_momentum)::value>(
                    var, grad, velocity, momentum, average_grad, sc, i);
        });
    });
}

CNNKIT_INSTANTIATE_OPTIMIZER(float)
CNNKIT_INSTANTIATE_OPTIMIZER(double)

}  // namespace cuda_host
}  // namespace cnnkit
