// bias.cuh: the per-element (per-thread) work of the bias kernels (bias.cu), __host__ __device__ so
// that the host test module cnnkit._cuda_host runs it on the CPU over the same grids (tests marked
// cuda_host), and bias_add's choice of index type.
#pragma once

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda {

// y[e] += b[e % O], then max(., 0) if relu (NaN passes, as the CPU's relu).
template <class T, class I>
CNNKIT_HD void bias_add_element(T* __restrict__ y, const T* __restrict__ b, I O, bool relu, I e) {
    const T v = y[e] + b[e % O];
    y[e] = relu ? (v < T(0) ? T(0) : v) : v;
}

inline bool bias_add_index32(index_t rows, index_t O) { return fits32({checked_mul(rows, O, "bias_add size")}); }

// bias_grad's chunk partials: thread (column o, row lane `lane`) of chunk `chunk` sums rows
// r0 + lane, r0 + lane + lanes, ... of its chunk in double (0 past the last column).
template <class T>
CNNKIT_HD double column_lane_sum(const T* __restrict__ a, index_t rows, index_t O, index_t chunk_rows,
                                 index_t chunk, index_t o, int lane, int lanes) {
    const index_t r0 = chunk * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
    double s = 0.0;
    if (o < O)
        for (index_t r = r0 + lane; r < r1; r += lanes) s += static_cast<double>(a[r * O + o]);
    return s;
}

// out[o]: the chunk partials part[k * O + o] added in chunk order.
template <class T>
CNNKIT_HD void column_finish_element(const double* __restrict__ part, T* __restrict__ out, index_t nchunks,
                                     index_t O, index_t o) {
    double s = 0.0;
    for (index_t k = 0; k < nchunks; ++k) s += part[k * O + o];
    out[o] = static_cast<T>(s);
}

}  // namespace cuda
}  // namespace cnnkit
