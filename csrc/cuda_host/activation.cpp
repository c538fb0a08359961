// activation.cpp (cnnkit._cuda_host, test-only): csrc/cuda/activation.cu's elementwise launchers on
// the CPU, one call of the kernels' per-element functions (cuda/activation.cuh) per element, with
// the kernels' 64-bit flat index. The row kernels (softmax, log_softmax) are block reductions and
// stay device-only: they are not defined or bound here.
#include "cuda/activation.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {
namespace {

template <class F>
void loop(const char* what, index_t n, Stream stream, F&& f) {
    with_index_type(stream, false, what, [&](auto) {
        for (index_t i = 0; i < n; ++i) f(i);
    });
}

}  // namespace

template <class T>
void unary_forward(Unary op, const T* x, T* y, index_t n, Stream stream) {
    loop("unary_forward", n, stream, [&](index_t i) { y[i] = cuda::unary(op, x[i]); });
}

template <class T>
void binary_backward(Binary op, const T* dy, const T* v, T* dx, index_t n, Stream stream) {
    loop("binary_backward", n, stream, [&](index_t i) { dx[i] = cuda::binary(op, dy[i], v[i]); });
}

template <class T>
void alpha_forward(Alpha op, const T* x, T* y, index_t n, T alpha, Stream stream) {
    loop("alpha_forward", n, stream, [&](index_t i) { y[i] = cuda::alpha_forward_value(op, x[i], alpha); });
}

template <class T>
void alpha_backward(Alpha op, const T* dy, const T* x, T* dx, index_t n, T alpha, Stream stream) {
    loop("alpha_backward", n, stream, [&](index_t i) { dx[i] = cuda::alpha_backward_value(op, dy[i], x[i], alpha); });
}

template <class T>
void dropout_forward(const T* x, T* y, index_t n, double rate, std::uint64_t seed, Stream stream) {
    require(rate >= 0 && rate < 1, "rate must be in [0, 1), got " + std::to_string(rate));
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    const std::uint64_t key = rng_key(seed), threshold = dropout_threshold(rate);
    loop("dropout_forward", n, stream, [&](index_t i) { cuda::dropout_element(x, y, key, threshold, scale, i); });
}

#define CNNKIT_INSTANTIATE_HOST_ACTIVATION(T)                                                  \
    template void unary_forward<T>(Unary, const T*, T*, index_t, Stream);                      \
    template void binary_backward<T>(Binary, const T*, const T*, T*, index_t, Stream);         \
    template void alpha_forward<T>(Alpha, const T*, T*, index_t, T, Stream);                   \
    template void alpha_backward<T>(Alpha, const T*, const T*, T*, index_t, T, Stream);        \
    template void dropout_forward<T>(const T*, T*, index_t, double, std::uint64_t, Stream);
CNNKIT_INSTANTIATE_HOST_ACTIVATION(float)
CNNKIT_INSTANTIATE_HOST_ACTIVATION(double)

}  // namespace cuda_host
}  // namespace cnnkit
