// activation.cuh: the per-element work of the elementwise activation and dropout kernels
// (activation.cu), __host__ __device__ so that the host test module cnnkit._cuda_host runs the same
// formulas and the same dropout test on the CPU (tests marked cuda_host). On the device the math is
// CUDA's libm (expf, expm1f, tanhf: within 2 ulp), on the host the C++ library's; the rules (NaN,
// zero, the sigmoid and tanh rewrites that never overflow) are this file's. The row kernels
// (softmax, log_softmax: block reductions) stay device-only.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace cnnkit {
namespace cuda {

#if defined(__CUDA_ARCH__)
CNNKIT_HD float exp_(float x) { return expf(x); }
CNNKIT_HD double exp_(double x) { return exp(x); }
CNNKIT_HD float expm1_(float x) { return expm1f(x); }
CNNKIT_HD double expm1_(double x) { return expm1(x); }
CNNKIT_HD float tanh_(float x) { return tanhf(x); }
CNNKIT_HD double tanh_(double x) { return tanh(x); }
#else
template <class T>
inline T exp_(T x) { return std::exp(x); }
template <class T>
inline T expm1_(T x) { return std::expm1(x); }
template <class T>
inline T tanh_(T x) { return std::tanh(x); }
#endif

template <class T>
CNNKIT_HD T mag(T x) {
    return x < T(0) ? -x : x;
}

template <class T>
CNNKIT_HD T unary(Unary op, T v) {
    switch (op) {
        case Unary::relu: return v < T(0) ? T(0) : v;
        case Unary::sigmoid: {
            const T e = exp_(-mag(v)), r = T(1) / (T(1) + e);
            return v >= T(0) ? r : e * r;
        }
        default: return tanh_(v);
    }
}

template <class T>
CNNKIT_HD T binary(Binary op, T g, T v) {
    switch (op) {
        case Binary::relu: return v <= T(0) ? T(0) : g;
        case Binary::sigmoid: {
            const T e = exp_(-mag(v)), r = T(1) / (T(1) + e);
            return g * (e * r * r);
        }
        case Binary::sigmoid_from_output: return g * (v * (T(1) - v));
        case Binary::tanh: {
            const T e = exp_(T(-2) * mag(v)), r = T(1) / (T(1) + e);
            return g * (T(4) * e * r * r);
        }
        default: return g * (T(1) - v * v);
    }
}

template <class T>
CNNKIT_HD T alpha_forward_value(Alpha op, T v, T alpha) {
    if (op == Alpha::leaky_relu) return v < T(0) ? alpha * v : v;
    return v > T(0) ? v : alpha * expm1_(v > T(0) ? T(0) : v);
}

template <class T>
CNNKIT_HD T alpha_backward_value(Alpha op, T g, T v, T alpha) {
    if (op == Alpha::leaky_relu) return v > T(0) ? g : alpha * g;
    return v > T(0) ? g : alpha * exp_(v > T(0) ? T(0) : v) * g;
}

// y[i] = x[i] * scale where rng_bits(key, i) >= threshold (common.h), else 0.
template <class T>
CNNKIT_HD void dropout_element(const T* x, T* y, std::uint64_t key, std::uint64_t threshold, T scale, index_t i) {
    const T kept = x[i] * scale;
    y[i] = rng_bits(key, static_cast<std::uint64_t>(i)) >= threshold ? kept : T(0);
}

}  // namespace cuda
}  // namespace cnnkit
