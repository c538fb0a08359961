// vecmath.h: vectorizable math for the CPU kernels (activation.cpp, loss.cpp): exp, expm1, tanh and
// the blocked sum of exps of softmax and cross-entropy. std::exp, expm1 and tanh are libm calls,
// which GCC vectorizes only under -ffast-math; the float versions here use only arithmetic, integer
// bit operations and selects, so loops calling them vectorize (also in the AVX2/AVX-512 copies of
// CNNKIT_SIMD_CLONES loops: they are always inlined). They follow Cephes (expf, tanhf), accurate to
// a few ulp; double keeps libm.
// exp_nonpos turns its one comparison into an integer mask and selects on bit patterns, never between
// two float values, so it vectorizes whether or not the file is compiled with -ftrapping-math (GCC's
// default, under which it will not if-convert a select whose arm does floating-point arithmetic).
// expm1_nonpos and tanh_any select between two computed float values and vectorize only without it
// (activation.cpp's region).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "cpu/simd.h"

namespace cnnkit {
namespace cpu {

// |x| (a call to std::abs would not be inlined into activation.cpp's no-trapping-math region).
template <class T>
CNNKIT_INLINE T magnitude(T x) {
    return x < T(0) ? -x : x;
}

// exp(x) for x <= 0 (or NaN: the only arguments the kernels form). x = n ln2 + r with |r| <= ln2 / 2
// (Cody-Waite split of ln2), e^r from a degree-6 polynomial, 2^n assembled in the exponent bits.
// 0 below ln(FLT_MIN) (no subnormal results); a NaN flows through the arithmetic and stays NaN. As
// fast as the clamp-only version loss.cpp had (which turned a negative NaN into 0).
CNNKIT_INLINE float exp_nonpos(float x) {
    constexpr float lo = -87.3365447f;  // ln(FLT_MIN)
    std::uint32_t ux;
    std::memcpy(&ux, &x, sizeof ux);
    // below: all ones where x < ln(FLT_MIN) (-inf included, NaN not). A mask, not a select of floats:
    // GCC will not if-convert such a select under -ftrapping-math, and branches in a loop's remainder.
    const std::uint32_t below = 0u - static_cast<std::uint32_t>(x < lo);
    const std::uint32_t uc = (ux & ~below) | (0xC2AEAC50u & below);  // x clamped to lo, to keep n in range
    float xc;
    std::memcpy(&xc, &uc, sizeof xc);
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const float t = xc * 1.44269504f + shifter;
    const float n = t - shifter;  // round(x / ln2)
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    std::uint32_t ut;
    std::memcpy(&ut, &t, sizeof ut);
    const std::uint32_t biased = ut - 0x4B400000u + 127u;  // n + the exponent bias, 1..127 in range
    const std::uint32_t bits = (biased << 23) & ~below;    // 2^n, or 0 below ln(FLT_MIN)
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
CNNKIT_INLINE double exp_nonpos(double x) { return std::exp(x); }

// expm1(x) for x <= 0: Taylor series to x^8 near 0 (truncation < 2e-8 relative for x > -0.5),
// exp(x) - 1 below, where exp(x) < 0.61 leaves no cancellation.
CNNKIT_INLINE float expm1_nonpos(float x) {
    const float xn = x > -0.5f ? x : 0.0f;  // the series only sees small arguments
    float p = 1.0f / 40320;
    p = p * xn + 1.0f / 5040;
    p = p * xn + 1.0f / 720;
    p = p * xn + 1.0f / 120;
    p = p * xn + 1.0f / 24;
    p = p * xn + 1.0f / 6;
    p = p * xn + 0.5f;
    p = p * xn + 1.0f;
    const float near0 = p * xn;
    const float far = exp_nonpos(x) - 1.0f;
    return x > -0.5f ? near0 : far;
}
CNNKIT_INLINE double expm1_nonpos(double x) { return std::expm1(x); }

// tanh: an odd polynomial for |x| < 0.625 (Cephes tanhf), (1 - e) / (1 + e) with e = exp(-2|x|)
// beyond, where 1 - e has no cancellation. Never overflows.
CNNKIT_INLINE float tanh_any(float x) {
    const float ax = magnitude(x);
    const float xn = ax < 0.625f ? x : 0.0f;  // the polynomial only sees small arguments
    const float z = xn * xn;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float e = exp_nonpos(-2.0f * ax);
    const float t = (1.0f - e) / (1.0f + e);
    const float near0 = p * z * xn + xn;
    const float far = x < 0.0f ? -t : t;
    return ax < 0.625f ? near0 : far;
}
CNNKIT_INLINE double tanh_any(double x) { return std::tanh(x); }

// sum_k exp(x[k] - m) over k < n (m the maximum: every argument <= 0), also stored in e[k] when e is
// non-null. Summed in T over blocks of Block values (a SIMD reduction) and the block sums in double:
// float lanes run about twice as fast as converting every term to double, and the rounding stays
// bounded by the block length (at most Block / lanes additions per lane), not the row length.
template <index_t Block, class T>
CNNKIT_INLINE double sum_exp_blocks(const T* x, index_t n, T m, T* e) {
    double s = 0.0;
    for (index_t k0 = 0; k0 < n; k0 += Block) {
        const index_t k1 = std::min(n, k0 + Block);
        T part = 0;
        if (e) {
#pragma omp simd reduction(+ : part)
            for (index_t k = k0; k < k1; ++k) {
                e[k] = exp_nonpos(x[k] - m);
                part += e[k];
            }
        } else {
#pragma omp simd reduction(+ : part)
            for (index_t k = k0; k < k1; ++k) part += exp_nonpos(x[k] - m);
        }
        s += static_cast<double>(part);
    }
    return s;
}

// sum_k exp(x[k] - m) - 1, the sum less the maximum's own term, without rounding it against that 1:
// terms at the maximum (exactly 1 each) are counted apart and the rest summed like sum_exp_blocks.
// A confident row's log-sum-exp is log1p of this; 1 + 1e-5 summed in float keeps two of its digits.
// e[k] receives every exp (the maximum's 1 included) when e is non-null.
template <index_t Block, class T>
CNNKIT_INLINE double sum_exp_excess_blocks(const T* x, index_t n, T m, T* e) {
    double s = 0.0;
    index_t at_max = 0;
    for (index_t k0 = 0; k0 < n; k0 += Block) {
        const index_t k1 = std::min(n, k0 + Block);
        T part = 0;
        index_t ties = 0;
#pragma omp simd reduction(+ : part, ties)
        for (index_t k = k0; k < k1; ++k) {
            const T v = exp_nonpos(x[k] - m);
            if (e) e[k] = v;
            const bool top = x[k] == m;
            part += top ? T(0) : v;
            ties += top ? 1 : 0;
        }
        s += static_cast<double>(part);
        at_max += ties;
    }
    return s + static_cast<double>(at_max - 1);
}

}  // namespace cpu
}  // namespace cnnkit
