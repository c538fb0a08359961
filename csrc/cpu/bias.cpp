// bias.cpp: the bias of conv2d and dense, whose GEMM leaves y as (rows, O): bias_add adds b to
// every row (and applies the fused ReLU), bias_grad sums dy's columns. OpenMP over rows; bias_grad
// sums fixed blocks of rows into double partials and adds them in block order, so db does not
// depend on the thread count. The CUDA twin is cuda/bias.cu.
#include <algorithm>
#include <vector>

#include "cpu/kernels.h"

namespace cnnkit {
namespace cpu {

// y (rows, O) += b (O) on every row, then y = max(y, 0) if relu (NaN passes, as the relu kernel).
template <class T>
void bias_add(T* y, const T* b, index_t rows, index_t O, bool relu, Stream) {
#pragma omp parallel for schedule(static)
    for (index_t r = 0; r < rows; ++r) {
        T* yr = y + r * O;
        if (relu) {
            for (index_t o = 0; o < O; ++o) {
                const T v = yr[o] + b[o];
                yr[o] = v < T(0) ? T(0) : v;
            }
        } else {
            for (index_t o = 0; o < O; ++o) yr[o] += b[o];
        }
    }
}

// db (O) = column sums of dy (rows, O), accumulated in double. Deterministic whatever the thread
// count: fixed blocks of rows are summed into per-block partials (scratch: rows/block * O doubles),
// which are then added in block order.
template <class T>
void bias_grad(const T* dy, T* db, index_t rows, index_t O, Stream) {
    constexpr index_t block = 512;
    const index_t nblocks = (rows + block - 1) / block;
    std::vector<double> partial(static_cast<size_t>(nblocks * O), 0.0);
#pragma omp parallel for schedule(static)
    for (index_t bi = 0; bi < nblocks; ++bi) {
        double* acc = partial.data() + bi * O;
        const index_t r1 = std::min(rows, (bi + 1) * block);
        for (index_t r = bi * block; r < r1; ++r) {
            const T* dyr = dy + r * O;
            for (index_t o = 0; o < O; ++o) acc[o] += dyr[o];
        }
    }
#pragma omp parallel for schedule(static)
    for (index_t o = 0; o < O; ++o) {
        double s = 0.0;
        for (index_t bi = 0; bi < nblocks; ++bi) s += partial[bi * O + o];
        db[o] = static_cast<T>(s);
    }
}

CNNKIT_INSTANTIATE_BIAS(float)
CNNKIT_INSTANTIATE_BIAS(double)

}  // namespace cpu
}  // namespace cnnkit
