// optimizer.cpp: the optimizers' fused update steps (SGD with momentum/Nesterov, Adam/AdamW/AMSGrad,
// RMSprop centered/with momentum), float and double, in place on a flat variable and its slots: one
// pass over memory instead of the dozen NumPy passes of the unfused step. The scalars come from the
// host in double (common.h's *Step), rounded once to T; each formula is Keras' (and the old NumPy
// path's) in the same order of operations, compiled without FMA contraction, so the result is that
// of the NumPy path bit for bit. OpenMP splits 8192-element chunks statically over the threads
// (small variables stay on one thread); the options are template flags, so each loop is one
// branch-free body that vectorizes, also for AVX2/AVX-512 (CNNKIT_SIMD_CLONES).
#include <cmath>
#include <type_traits>

#include "cpu/kernels.h"
#include "cpu/simd.h"

// CMakeLists.txt compiles this file with -fno-math-errno (sqrt is then one sqrtps/sqrtpd: a
// `#pragma GCC optimize` does not reach the sqrt expansion), -ffp-contract=off (no FMAs: each product
// and sum is rounded as NumPy rounds it) and -fno-trapping-math (selects are if-converted).

namespace cnnkit {
namespace cpu {
namespace {

constexpr index_t kParallelMin = 1 << 15;

// f(begin, end) over [0, n) in chunks of 8192 elements, split statically over the threads.
template <class F>
void for_chunks(index_t n, F f) {
    constexpr index_t chunk = 8192;
    const index_t count = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (index_t c = 0; c < count; ++c) f(c * chunk, c + 1 < count ? (c + 1) * chunk : n);
}

// sqrt as the builtin, inlined into the loop (std::sqrt(float) is an out-of-line call that GCC does
// not vectorize).
#if defined(__GNUC__)
CNNKIT_INLINE float root(float x) { return __builtin_sqrtf(x); }
CNNKIT_INLINE double root(double x) { return __builtin_sqrt(x); }
#else
template <class T>
inline T root(T x) { return std::sqrt(x); }
#endif

// v_hat = max(v_hat, v) with NumPy's maximum's NaN rule (NaN if either is), as a select.
template <class T>
CNNKIT_INLINE T nan_max(T h, T v) {
    return v != v ? v : (h < v ? v : h);
}

// w = w keep - lr g; with momentum m = mu m - lr g, then w += m (Nesterov: w += mu m - lr g).
template <bool kMomentum, bool kNesterov, class T>
CNNKIT_SIMD_CLONES void sgd_span(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ mom, index_t n,
                                 T lr, T mu, T keep) {
    for (index_t i = 0; i < n; ++i) {
        const T step = g[i] * lr;
        const T wi = w[i] * keep;
        if (kMomentum) {
            const T m = mom[i] * mu - step;
            mom[i] = m;
            w[i] = kNesterov ? (wi - step) + m * mu : wi + m;
        } else {
            w[i] = wi - step;
        }
    }
}

// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); AMSGrad: v_hat = max(v_hat, v), used for v;
// w = w keep - m / (sqrt(v) + eps) alpha.
template <bool kAmsgrad, class T>
CNNKIT_SIMD_CLONES void adam_span(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                                  T* __restrict__ v_hat, index_t n, T alpha, T c1, T c2, T eps, T keep) {
    for (index_t i = 0; i < n; ++i) {
        const T gi = g[i];
        const T mi = m[i] + (gi - m[i]) * c1;
        T vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        if (kAmsgrad) {
            vi = nan_max(v_hat[i], vi);
            v_hat[i] = vi;
        }
        w[i] = w[i] * keep - mi / (root(vi) + eps) * alpha;
    }
}

// v = rho v + (1 - rho) g^2; centered: a = rho a + (1 - rho) g, d = v - a^2 + eps, else d = v + eps;
// inc = g / sqrt(d) lr; with momentum mom = mu mom + inc, w = w keep - mom, else w = w keep - inc.
template <bool kCentered, bool kMomentum, class T>
CNNKIT_SIMD_CLONES void rmsprop_span(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ vel,
                                     T* __restrict__ mom, T* __restrict__ avg, index_t n, T lr, T rho, T c,
                                     T mu, T eps, T keep) {
    for (index_t i = 0; i < n; ++i) {
        const T gi = g[i];
        const T v = vel[i] * rho + gi * gi * c;
        vel[i] = v;
        T d = v + eps;
        if (kCentered) {
            const T a = avg[i] * rho + gi * c;
            avg[i] = a;
            d = (v - a * a) + eps;
        }
        const T inc = gi / root(d) * lr;
        const T wi = w[i] * keep;
        if (kMomentum) {
            const T mo = mom[i] * mu + inc;
            mom[i] = mo;
            w[i] = wi - mo;
        } else {
            w[i] = wi - inc;
        }
    }
}

// f(bool_constant<a>, bool_constant<b>): the runtime options as template flags.
template <class F>
void with_flags(bool a, bool b, F&& f) {
    using Y = std::true_type;
    using N = std::false_type;
    if (a && b) f(Y{}, Y{});
    else if (a) f(Y{}, N{});
    else if (b) f(N{}, Y{});
    else f(N{}, N{});
}

}  // namespace

template <class T>
void sgd_update(T* var, const T* grad, T* momentum, index_t n, const SgdStep& s, Stream) {
    const T lr = T(s.learning_rate), mu = T(s.momentum), keep = T(s.keep);
    with_flags(momentum != nullptr, s.nesterov, [&](auto has_momentum, auto nesterov) {
        for_chunks(n, [&](index_t b, index_t e) {
            sgd_span<decltype(has_momentum)::value, decltype(nesterov)::value>(
                var + b, grad + b, momentum ? momentum + b : nullptr, e - b, lr, mu, keep);
        });
    });
}

template <class T>
void adam_update(T* var, const T* grad, T* m, T* v, T* v_hat, index_t n, const AdamStep& s, Stream) {
    const T alpha = T(s.alpha), c1 = T(s.one_minus_beta_1), c2 = T(s.one_minus_beta_2), eps = T(s.epsilon),
            keep = T(s.keep);
    auto run = [&](auto amsgrad) {
        for_chunks(n, [&](index_t b, index_t e) {
            adam_span<decltype(amsgrad)::value>(var + b, grad + b, m + b, v + b, v_hat ? v_hat + b : nullptr, e - b,
                                                alpha, c1, c2, eps, keep);
        });
    };
    if (v_hat)
        run(std::true_type{});
    else
        run(std::false_type{});
}

template <class T>
void rmsprop_update(T* var, const T* grad, T* velocity, T* momentum, T* average_grad, index_t n,
                    const RmspropStep& s, Stream) {
    const T lr = T(s.learning_rate), rho = T(s.rho), c = T(s.one_minus_rho), mu = T(s.momentum),
            eps = T(s.epsilon), keep = T(s.keep);
    with_flags(average_grad != nullptr, momentum != nullptr, [&](auto centered, auto has_momentum) {
        for_chunks(n, [&](index_t b, index_t e) {
            rmsprop_span<decltype(centered)::value, decltype(has_momentum)::value>(
                var + b, grad + b, velocity + b, momentum ? momentum + b : nullptr,
                average_grad ? average_grad + b : nullptr, e - b, lr, rho, c, mu, eps, keep);
        });
    });
}

CNNKIT_INSTANTIATE_OPTIMIZER(float)
CNNKIT_INSTANTIATE_OPTIMIZER(double)

}  // namespace cpu
}  // namespace cnnkit
