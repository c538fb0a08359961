// norm.cuh: the per-element work of batch normalization's elementwise passes (norm.cu), __host__
// __device__ so that the host test module cnnkit._cuda_host runs exactly this arithmetic on the CPU
// (tests marked cuda_host), and their choice of index type. The reductions (chunk partials combined
// in shared memory) stay device-only.
#pragma once

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda {

// The per-channel coefficients coef, C values per row: the normalize pass reads 3 rows
// [mean_t, scale, shift], the dx passes 4 ([mean_t, a, mdy, k] in training; a = coef[3C + c] in
// inference).
constexpr index_t kCoefRows = 4;

// y = (x - coef_mean) * coef_scale + coef_shift
template <class T, class I>
CNNKIT_HD void normalize_element(const T* __restrict__ x, const T* __restrict__ coef, T* __restrict__ y, I C, I e) {
    const I c = e % C;
    y[e] = (x[e] - coef[c]) * coef[C + c] + coef[2 * C + c];
}

// dx = a * (dy - mdy - (x - mean) * k)
template <class T, class I>
CNNKIT_HD void train_dx_element(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ coef,
                                T* __restrict__ dx, I C, I e) {
    const I c = e % C;
    dx[e] = coef[C + c] * (dy[e] - coef[2 * C + c] - (x[e] - coef[c]) * coef[3 * C + c]);
}

// dx = a * dy (inference), a = coef[3C + c]
template <class T, class I>
CNNKIT_HD void scale_dx_element(const T* __restrict__ dy, const T* __restrict__ coef, T* __restrict__ dx, I C,
                                I e) {
    dx[e] = coef[3 * C + e % C] * dy[e];
}

// 32-bit indices when the (M, C) tensor and the coefficient rows (up to 4C) fit: C >= 2^29 with a
// small batch fits the first but not the second.
inline bool norm_elementwise_index32(index_t M, index_t C) {
    return fits32({checked_mul(M, C, "batch_norm size"), checked_mul(kCoefRows, C, "batch_norm coefficients")});
}

}  // namespace cuda
}  // namespace cnnkit
