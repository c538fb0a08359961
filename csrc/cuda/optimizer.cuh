// optimizer.cuh: the per-element work of the optimizers' fused update kernels (optimizer.cu),
// __host__ __device__ so that the host test module cnnkit._cuda_host runs the same formulas on the
// CPU (tests marked cuda_host). One element: read grad, var and the slots, write var and the slots,
// with Keras' formulas in the order of operations of csrc/cpu/optimizer.cpp (the scalars rounded
// once to T on the host). On the device nvcc may contract a product and a sum into one FMA, so a
// float result can differ from the CPU's in the last bits. The options are template flags: each
// kernel instance is one straight-line body.
#pragma once

#include <cmath>
#include <type_traits>

#include "common.h"

namespace cnnkit {
namespace cuda {

#if defined(__CUDA_ARCH__)
CNNKIT_HD float sqrt_(float x) { return sqrtf(x); }
CNNKIT_HD double sqrt_(double x) { return sqrt(x); }
#else
template <class T>
inline T sqrt_(T x) { return std::sqrt(x); }
#endif

// A step's scalars in the variable's type (common.h's *Step, rounded once on the host).
template <class T>
struct SgdScalars {
    T lr, mu, keep;
};
template <class T>
struct AdamScalars {
    T alpha, c1, c2, eps, keep;
};
template <class T>
struct RmspropScalars {
    T lr, rho, c, mu, eps, keep;
};
template <class T>
inline SgdScalars<T> scalars_of(const SgdStep& s) {
    return {T(s.learning_rate), T(s.momentum), T(s.keep)};
}
template <class T>
inline AdamScalars<T> scalars_of(const AdamStep& s) {
    return {T(s.alpha), T(s.one_minus_beta_1), T(s.one_minus_beta_2), T(s.epsilon), T(s.keep)};
}
template <class T>
inline RmspropScalars<T> scalars_of(const RmspropStep& s) {
    return {T(s.learning_rate), T(s.rho), T(s.one_minus_rho), T(s.momentum), T(s.epsilon), T(s.keep)};
}

// w = w keep - lr g; with momentum m = mu m - lr g, then w += m (Nesterov: w += mu m - lr g).
template <bool kMomentum, bool kNesterov, class T>
CNNKIT_HD void sgd_element(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ mom, SgdScalars<T> s,
                           index_t i) {
    const T step = g[i] * s.lr;
    const T wi = w[i] * s.keep;
    if (kMomentum) {
        const T m = mom[i] * s.mu - step;
        mom[i] = m;
        w[i] = kNesterov ? (wi - step) + m * s.mu : wi + m;
    } else {
        w[i] = wi - step;
    }
}

// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); AMSGrad: v_hat = max(v_hat, v) (NaN if either is,
// as NumPy's maximum), used for v; w = w keep - m / (sqrt(v) + eps) alpha.
template <bool kAmsgrad, class T>
CNNKIT_HD void adam_element(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            T* __restrict__ v_hat, AdamScalars<T> s, index_t i) {
    const T gi = g[i];
    const T mi = m[i] + (gi - m[i]) * s.c1;
    T vi = v[i] + (gi * gi - v[i]) * s.c2;
    m[i] = mi;
    v[i] = vi;
    if (kAmsgrad) {
        const T h = v_hat[i];
        vi = vi != vi ? vi : (h < vi ? vi : h);
        v_hat[i] = vi;
    }
    w[i] = w[i] * s.keep - mi / (sqrt_(vi) + s.eps) * s.alpha;
}

// v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g, d = v - a^2 + eps, else d = v + eps;
// inc = g / sqrt(d) lr; with momentum mom = mu mom + inc, w = w keep - mom, else w = w keep - inc.
template <bool kCentered, bool kMomentum, class T>
CNNKIT_HD void rmsprop_element(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ vel,
                               T* __restrict__ mom, T* __restrict__ avg, RmspropScalars<T> s, index_t i) {
    const T gi = g[i];
    const T v = vel[i] * s.rho + gi * gi * s.c;
    vel[i] = v;
    T d = v + s.eps;
    if (kCentered) {
        const T a = avg[i] * s.rho + gi * s.c;
        avg[i] = a;
        d = (v - a * a) + s.eps;
    }
    const T inc = gi / sqrt_(d) * s.lr;
    const T wi = w[i] * s.keep;
    if (kMomentum) {
        const T mo = mom[i] * s.mu + inc;
        mom[i] = mo;
        w[i] = wi - mo;
    } else {
        w[i] = wi - inc;
    }
}

// f(bool_constant<a>, bool_constant<b>): two runtime options as template flags.
template <class F>
void with_flags(bool a, bool b, F&& f) {
    using Y = std::true_type;
    using N = std::false_type;
    if (a && b) f(Y{}, Y{});
    else if (a) f(Y{}, N{});
    else if (b) f(N{}, Y{});
    else f(N{}, N{});
}

}  // namespace cuda
}  // namespace cnnkit
