// norm.cpp: batch normalization (Keras semantics) over a channels-last tensor viewed as (M, C):
// M = N*H*W rows of C contiguous channels, statistics per channel over the rows.
// Reductions split the rows into blocks of a fixed size (set by C, never by the thread count); the
// blocks accumulate per-channel partial sums in double in parallel and the partials are then combined
// in block order, so every result is bit-identical for any OpenMP thread count. The variance is a sum
// of squared deviations (two passes over each cached block, no cancellation); normalize and dx are
// elementwise passes, parallel over rows. The kernels are memory-bound: passes over x are counted.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/simd.h"

namespace cnnkit {
namespace cpu {

namespace {

// The row blocks of every pass over (M, C): about 16K elements each (a block fits in L2), at least
// 8 rows; their number depends on M and C only, never on the thread count.
struct Blocks {
    index_t M, rows, count;
    Blocks(index_t M_, index_t C)
        : M(M_), rows(std::max<index_t>(8, 16384 / std::max<index_t>(C, 1))), count((M_ + rows - 1) / rows) {}
};

// f(b, r0, r1) for each block b, rows [r0, r1), the blocks in parallel.
template <class F>
void for_blocks(const Blocks& blocks, F f) {
#pragma omp parallel for schedule(static)
    for (index_t b = 0; b < blocks.count; ++b) f(b, b * blocks.rows, std::min(blocks.M, (b + 1) * blocks.rows));
}

// Scratch for the reductions: two per-channel partials (C doubles each) per block.
inline std::vector<double> block_partials(const Blocks& blocks, index_t C) {
    return std::vector<double>(static_cast<size_t>(checked_mul(blocks.count, 2 * C, "batch norm partial sums")));
}

// ---- per-block row loops (channels innermost, so they vectorize over C) ----

// Block mean bm[c] and sum of squared deviations from it bq[c] over rows [r0, r1): two passes over
// rows that stay in cache.
template <class T>
CNNKIT_SIMD_CLONES void block_moments(const T* x, index_t r0, index_t r1, index_t C, double* bm, double* bq) {
    std::fill(bm, bm + C, 0.0);
    std::fill(bq, bq + C, 0.0);
    for (index_t r = r0; r < r1; ++r) {
        const T* row = x + r * C;
        for (index_t c = 0; c < C; ++c) bm[c] += static_cast<double>(row[c]);
    }
    const double inv_n = 1.0 / static_cast<double>(r1 - r0);
    for (index_t c = 0; c < C; ++c) bm[c] *= inv_n;
    for (index_t r = r0; r < r1; ++r) {
        const T* row = x + r * C;
        for (index_t c = 0; c < C; ++c) {
            const double d = static_cast<double>(row[c]) - bm[c];
            bq[c] += d * d;
        }
    }
}

// p[c] = sum dy, q[c] = sum dy * (x - mean) over rows [r0, r1); with dx non-null also dx = a * dy.
template <class T>
CNNKIT_SIMD_CLONES void block_grad_sums(const T* dy, const T* x, const double* mean, const T* a, T* dx, index_t r0,
                                        index_t r1, index_t C, double* p, double* q) {
    std::fill(p, p + C, 0.0);
    std::fill(q, q + C, 0.0);
    for (index_t r = r0; r < r1; ++r) {
        const T* dr = dy + r * C;
        const T* xr = x + r * C;
        for (index_t c = 0; c < C; ++c) {
            const double d = static_cast<double>(dr[c]);
            p[c] += d;
            q[c] += d * (static_cast<double>(xr[c]) - mean[c]);
        }
        if (dx) {
            T* o = dx + r * C;
            for (index_t c = 0; c < C; ++c) o[c] = a[c] * dr[c];
        }
    }
}

// y = (x - mean) * scale + shift over rows [r0, r1).
template <class T>
CNNKIT_SIMD_CLONES void rows_normalize(const T* x, const T* mean, const T* scale, const T* shift, index_t r0,
                                       index_t r1, index_t C, T* y) {
    for (index_t r = r0; r < r1; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        for (index_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * scale[c] + shift[c];
    }
}

// dx = a * (dy - mdy - (x - mean) * k) over rows [r0, r1).
template <class T>
CNNKIT_SIMD_CLONES void rows_train_dx(const T* dy, const T* x, const T* mean, const T* a, const T* mdy,
                                      const T* k, index_t r0, index_t r1, index_t C, T* dx) {
    for (index_t r = r0; r < r1; ++r) {
        const T* dr = dy + r * C;
        const T* xr = x + r * C;
        T* o = dx + r * C;
        for (index_t c = 0; c < C; ++c) o[c] = a[c] * (dr[c] - mdy[c] - (xr[c] - mean[c]) * k[c]);
    }
}

// ---- drivers: blocks in parallel, partials combined in block order ----

// Per-channel batch mean and biased variance in double (M > 0). The blocks' means and sums of squared
// deviations are merged in block order with the pairwise update of Chan, Golub and LeVeque: as stable
// as two passes over the whole batch, but x is read from memory once.
template <class T>
void batch_moments(const T* x, index_t M, index_t C, double* mean, double* var) {
    const Blocks blocks(M, C);
    std::vector<double> partial = block_partials(blocks, C);  // each block's mean and squared deviations
    for_blocks(blocks, [&](index_t b, index_t r0, index_t r1) {
        double* bm = partial.data() + b * 2 * C;
        block_moments(x, r0, r1, C, bm, bm + C);
    });
    std::fill(mean, mean + C, 0.0);
    std::fill(var, var + C, 0.0);
    double n = 0.0;
    for (index_t b = 0; b < blocks.count; ++b) {
        const double* bm = partial.data() + b * 2 * C;
        const double* bq = bm + C;
        const double nb = static_cast<double>(std::min(M, (b + 1) * blocks.rows) - b * blocks.rows);
        const double w = nb / (n + nb), cross = n * nb / (n + nb);
        for (index_t c = 0; c < C; ++c) {
            const double delta = bm[c] - mean[c];
            mean[c] += delta * w;
            var[c] += bq[c] + delta * delta * cross;
        }
        n += nb;
    }
    for (index_t c = 0; c < C; ++c) var[c] /= static_cast<double>(M);
}

// sum_dy[c] = sum dy, sum_dyxc[c] = sum dy * (x - mean), in double; with dx non-null also dx = a * dy.
template <class T>
void grad_sums(const T* dy, const T* x, const double* mean, const T* a, T* dx, index_t M, index_t C, double* sum_dy,
               double* sum_dyxc) {
    const Blocks blocks(M, C);
    std::vector<double> partial = block_partials(blocks, C);  // each block's two sums
    for_blocks(blocks, [&](index_t b, index_t r0, index_t r1) {
        double* p = partial.data() + b * 2 * C;
        block_grad_sums(dy, x, mean, a, dx, r0, r1, C, p, p + C);
    });
    std::fill(sum_dy, sum_dy + C, 0.0);
    std::fill(sum_dyxc, sum_dyxc + C, 0.0);
    for (index_t b = 0; b < blocks.count; ++b) {
        const double* p = partial.data() + b * 2 * C;
        for (index_t c = 0; c < C; ++c) {
            sum_dy[c] += p[c];
            sum_dyxc[c] += p[C + c];
        }
    }
}

// y = (x - mean) * (invstd * gamma) + beta, with gamma = 1 / beta = 0 when null.
template <class T>
void normalize(const T* x, const double* mean, const double* invstd, const T* gamma, const T* beta, index_t M,
               index_t C, T* y) {
    std::vector<T> mean_t(C), scale(C), shift(C);  // scratch, C values each
    for (index_t c = 0; c < C; ++c) {
        mean_t[c] = static_cast<T>(mean[c]);
        scale[c] = static_cast<T>(invstd[c] * (gamma ? static_cast<double>(gamma[c]) : 1.0));
        shift[c] = beta ? beta[c] : T(0);
    }
    for_blocks(Blocks(M, C), [&](index_t, index_t r0, index_t r1) {
        rows_normalize(x, mean_t.data(), scale.data(), shift.data(), r0, r1, C, y);
    });
}

inline double inv_sqrt(double v, double epsilon) { return 1.0 / std::sqrt(v + epsilon); }

}  // namespace

// Batch statistics of x (M, C) in double: mean and invstd = 1 / sqrt(biased var + epsilon).
// M = 0 gives mean 0, variance 0.
template <class T>
void batch_norm_batch_stats(const T* x, index_t M, index_t C, double epsilon, double* mean, double* invstd,
                            Stream) {
    std::vector<double> v(C, 0.0);
    std::fill(mean, mean + C, 0.0);
    if (M > 0) batch_moments(x, M, C, mean, v.data());
    for (index_t c = 0; c < C; ++c) invstd[c] = inv_sqrt(v[c], epsilon);
}

// Training forward: normalize with the batch statistics (saved in double in mean/invstd for the
// backward) and update moving = moving * momentum + batch * (1 - momentum) in place (biased variance,
// as Keras). An empty batch (M = 0) leaves the moving statistics untouched. Reads x twice, writes y.
template <class T>
void batch_norm_train_forward(const T* x, const T* gamma, const T* beta, index_t M, index_t C,
                              double momentum, double epsilon, T* y, double* mean, double* invstd,
                              T* moving_mean, T* moving_var, Stream) {
    std::vector<double> v(C, 0.0);
    std::fill(mean, mean + C, 0.0);
    if (M > 0) batch_moments(x, M, C, mean, v.data());
    for (index_t c = 0; c < C; ++c) {
        invstd[c] = inv_sqrt(v[c], epsilon);
        if (M > 0) {
            moving_mean[c] = static_cast<T>(moving_mean[c] * momentum + mean[c] * (1.0 - momentum));
            moving_var[c] = static_cast<T>(moving_var[c] * momentum + v[c] * (1.0 - momentum));
        }
    }
    normalize(x, mean, invstd, gamma, beta, M, C, y);
}

// Inference forward: normalize with the moving statistics.
template <class T>
void batch_norm_inference_forward(const T* x, const T* gamma, const T* beta, const T* moving_mean,
                                  const T* moving_var, index_t M, index_t C, double epsilon, T* y, Stream) {
    std::vector<double> m(C), is(C);
    for (index_t c = 0; c < C; ++c) {
        m[c] = static_cast<double>(moving_mean[c]);
        is[c] = inv_sqrt(static_cast<double>(moving_var[c]), epsilon);
    }
    normalize(x, m.data(), is.data(), gamma, beta, M, C, y);
}

// Training backward from the saved batch statistics (double, so that sum(dy * (x - mean)) does not
// inherit a rounded mean: it can be much smaller than sum(dy) * |mean|).
// With g = dy * gamma, xhat = (x - mean) * invstd:
// dx = invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)), dgamma = sum(dy * xhat), dbeta = sum(dy).
// Written per channel as dx = a * (dy - mean(dy) - (x - mean) * k), a = gamma * invstd,
// k = invstd^2 * mean(dy * (x - mean)): the subtractions happen at the scale of dy (one value per
// channel gives exactly 0). Reads dy and x twice, writes dx once.
template <class T>
void batch_norm_train_backward(const T* dy, const T* x, const T* gamma, const double* mean,
                               const double* invstd, index_t M, index_t C, T* dx, T* dgamma, T* dbeta, Stream) {
    std::vector<double> sum_dy(C), sum_dyxc(C);
    grad_sums(dy, x, mean, static_cast<const T*>(nullptr), static_cast<T*>(nullptr), M, C, sum_dy.data(),
              sum_dyxc.data());
    std::vector<T> mean_t(C), a(C), mdy(C), k(C);
    const double Md = static_cast<double>(std::max<index_t>(M, 1));
    for (index_t c = 0; c < C; ++c) {
        const double is = invstd[c];
        dbeta[c] = static_cast<T>(sum_dy[c]);
        dgamma[c] = static_cast<T>(sum_dyxc[c] * is);
        mean_t[c] = static_cast<T>(mean[c]);
        a[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * is);
        mdy[c] = static_cast<T>(sum_dy[c] / Md);
        k[c] = static_cast<T>(is * is * sum_dyxc[c] / Md);
    }
    for_blocks(Blocks(M, C), [&](index_t, index_t r0, index_t r1) {
        rows_train_dx(dy, x, mean_t.data(), a.data(), mdy.data(), k.data(), r0, r1, C, dx);
    });
}

// Inference backward: the moving statistics are constants, so dx = dy * gamma * invstd(moving);
// dgamma = sum(dy * xhat), dbeta = sum(dy). dx is written during the reduction pass (one pass).
template <class T>
void batch_norm_inference_backward(const T* dy, const T* x, const T* gamma, const T* moving_mean,
                                   const T* moving_var, index_t M, index_t C, double epsilon, T* dx,
                                   T* dgamma, T* dbeta, Stream) {
    std::vector<double> m(C), is(C), sum_dy(C), sum_dyxc(C);
    std::vector<T> a(C);
    for (index_t c = 0; c < C; ++c) {
        m[c] = static_cast<double>(moving_mean[c]);
        is[c] = inv_sqrt(static_cast<double>(moving_var[c]), epsilon);
        a[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * is[c]);
    }
    grad_sums(dy, x, m.data(), a.data(), dx, M, C, sum_dy.data(), sum_dyxc.data());
    for (index_t c = 0; c < C; ++c) {
        dbeta[c] = static_cast<T>(sum_dy[c]);
        dgamma[c] = static_cast<T>(sum_dyxc[c] * is[c]);
    }
}

CNNKIT_INSTANTIATE_NORM(float)
CNNKIT_INSTANTIATE_NORM(double)

}  // namespace cpu
}  // namespace cnnkit
