// loss.cpp: softmax cross-entropy over logits (N, K), with integer class ids (N,) or target
// probabilities (N, K). Rows run in parallel (OpenMP over N); each row takes its max m, sums
// exp(logit - m) (float blocks added in double) and uses log-sum-exp = m + log1p(sum - 1), stable for
// logits of any magnitude and exact to the last digits on confident rows. Per-row losses go to a float64 scratch (N,) that the caller allocates and are
// averaged serially in row order, so the mean does not depend on the thread count. The float32 exp is
// exp_nonpos (vecmath.h), a branch-free polynomial the compiler vectorizes (std::exp does not
// without -ffast-math).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "cpu/kernels.h"
#include "cpu/simd.h"
#include "cpu/vecmath.h"

namespace cnnkit {
namespace cpu {

namespace {

// Max of the row; *finite tells whether every value is finite (x * 0 is 0 for finite x, else NaN).
CNNKIT_SIMD_CLONES float row_max(const float* x, index_t K, bool* finite) {
    float m = x[0], probe = 0.0f;
#pragma omp simd reduction(max : m) reduction(+ : probe)
    for (index_t k = 0; k < K; ++k) {
        m = x[k] > m ? x[k] : m;
        probe += x[k] * 0.0f;
    }
    *finite = probe == 0.0f;
    return m;
}

inline double row_max(const double* x, index_t K, bool* finite) {
    double m = x[0], probe = 0.0;
    for (index_t k = 0; k < K; ++k) {
        m = x[k] > m ? x[k] : m;
        probe += x[k] * 0.0;
    }
    *finite = probe == 0.0;
    return m;
}

// sum_k exp(x[k] - m) - 1 (the max's own term left out, vecmath.h), also storing every exp into g[k]
// when g is non-null. Float rows are summed in float over blocks of 128 and the block sums in double
// (at most 32 additions per lane, error <= 2e-6 relative); double rows are summed in double.
CNNKIT_SIMD_CLONES double sum_exp_excess(const float* x, index_t K, float m, float* g) {
    return sum_exp_excess_blocks<128>(x, K, m, g);
}

inline double sum_exp_excess(const double* x, index_t K, double m, double* g) {
    return sum_exp_excess_blocks<128>(x, K, m, g);
}

// Sums over a row of probabilities p: returns sum p[k] * (m - x[k]) (terms >= 0: no cancellation,
// and m - x[k] is exact enough in float for logits of any size) and sets *psum = sum p[k]. Float rows
// are summed in float over blocks of 128 and the block sums in double, like sum_exp_excess.
CNNKIT_SIMD_CLONES double target_sums(const float* x, const float* p, index_t K, float m, double* psum) {
    constexpr index_t kBlock = 128;
    double s = 0.0, ps = 0.0;
    for (index_t k0 = 0; k0 < K; k0 += kBlock) {
        const index_t k1 = std::min(K, k0 + kBlock);
        float part = 0.0f, ppart = 0.0f;
#pragma omp simd reduction(+ : part, ppart)
        for (index_t k = k0; k < k1; ++k) {
            part += p[k] * (m - x[k]);
            ppart += p[k];
        }
        s += static_cast<double>(part);
        ps += static_cast<double>(ppart);
    }
    *psum = ps;
    return s;
}

inline double target_sums(const double* x, const double* p, index_t K, double m, double* psum) {
    double s = 0.0, ps = 0.0;
    for (index_t k = 0; k < K; ++k) {
        s += p[k] * (m - x[k]);
        ps += p[k];
    }
    *psum = ps;
    return s;
}

// g[k] = a * g[k] - b * p[k] (p may be null: g[k] = a * g[k]).
CNNKIT_SIMD_CLONES void scale_row(float* g, index_t K, float a, float b, const float* p) {
    if (p) {
#pragma omp simd
        for (index_t k = 0; k < K; ++k) g[k] = a * g[k] - b * p[k];
    } else {
#pragma omp simd
        for (index_t k = 0; k < K; ++k) g[k] = a * g[k];
    }
}

inline void scale_row(double* g, index_t K, double a, double b, const double* p) {
    for (index_t k = 0; k < K; ++k) g[k] = p ? a * g[k] - b * p[k] : a * g[k];
}

// One row: returns the row loss (when want_loss) and writes grad_scale * d(loss)/d(logits) into g
// (when g is non-null). Exactly one of label (>= 0, validated) and probs (non-null) describes the target.
template <class T>
double xent_row(const T* x, index_t K, std::int64_t label, const T* probs, double grad_scale, bool want_loss,
                T* g) {
    bool finite;
    const T m = row_max(x, K, &finite);
    // A NaN or infinite logit makes the row's loss and gradient NaN (as in plain arithmetic).
    // s = 1 + excess: log(s) is log1p(excess), so a confident row (loss ~ excess) keeps its digits.
    const double excess = finite ? sum_exp_excess(x, K, m, g) : std::numeric_limits<double>::quiet_NaN();
    const double s = 1.0 + excess;
    const double log_s = std::log1p(excess);
    double loss = 0.0;
    if (probs) {
        // -sum_k p_k log softmax_k = sum_k p_k (m - x_k) + sum(p) log(s)
        double psum;
        const double pdist = target_sums(x, probs, K, m, &psum);
        if (want_loss) loss = pdist + psum * log_s;
        // d/dx_k of -sum_j p_j log softmax_j = sum(p) * softmax_k - p_k
        if (g) scale_row(g, K, static_cast<T>(grad_scale * psum / s), static_cast<T>(grad_scale), probs);
    } else {
        if (want_loss) loss = (static_cast<double>(m) - static_cast<double>(x[label])) + log_s;
        if (g) {
            // softmax_label - 1 = -(the other classes' exps) / s, summed in double: a confident row
            // would cancel it in T (1 - 0.99999 in float32 keeps two digits), and s is summed in T
            // blocks
            double others = 0.0;
#pragma omp simd reduction(+ : others)
            for (index_t k = 0; k < K; ++k) others += k == label ? 0.0 : static_cast<double>(g[k]);
            scale_row(g, K, static_cast<T>(grad_scale / s), T(0), static_cast<const T*>(nullptr));
            g[label] = static_cast<T>(-grad_scale * others / s);
        }
    }
    return loss;
}

// Shared driver: rows in parallel; row_loss / loss / dlogits may each be null.
template <class T>
void xent_rows(const T* logits, const std::int64_t* labels, const T* probs, index_t N, index_t K,
               double grad_scale, double* row_loss, T* loss, T* dlogits) {
    bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (index_t i = 0; i < N; ++i) {
        std::int64_t label = -1;
        if (labels) {
            label = labels[i];
            if (label < 0 || label >= K) {  // never index with it; reported below
                bad = true;
                continue;
            }
        }
        const double l = xent_row(logits + i * K, K, label, probs ? probs + i * K : nullptr, grad_scale,
                                  row_loss != nullptr, dlogits ? dlogits + i * K : nullptr);
        if (row_loss) row_loss[i] = l;
    }
    if (bad) {
        for (index_t i = 0; i < N; ++i)
            require(labels[i] >= 0 && labels[i] < K,
                    "labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) + " is out of range [0, " +
                        std::to_string(K) + ")");
    }
    if (loss) {
        double total = 0.0;
        for (index_t i = 0; i < N; ++i) total += row_loss[i];
        *loss = static_cast<T>(N > 0 ? total / static_cast<double>(N) : std::numeric_limits<double>::quiet_NaN());
    }
}

}  // namespace

// Mean loss over the rows into *loss; row_loss (N,) is scratch. labels (N,) or probs (N, K): one is null.
template <class T>
void softmax_cross_entropy_forward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                   index_t K, double* row_loss, T* loss, bool /*check_labels: always, free here*/,
                                   Stream) {
    xent_rows(logits, labels, probs, N, K, 0.0, row_loss, loss, static_cast<T*>(nullptr));
}

// dlogits = dloss / N * (sum(p) * softmax(logits) - p), p the one-hot row or the target probabilities.
template <class T>
void softmax_cross_entropy_backward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                    index_t K, double dloss, T* dlogits, bool /*check_labels*/, Stream) {
    const double scale = N > 0 ? dloss / static_cast<double>(N) : 0.0;
    xent_rows(logits, labels, probs, N, K, scale, nullptr, static_cast<T*>(nullptr), dlogits);
}

// Both in one pass over the logits (gradient for dloss = 1).
template <class T>
void softmax_cross_entropy_fused(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                 index_t K, double* row_loss, T* loss, T* dlogits, bool /*check_labels*/,
                                 Stream) {
    const double scale = N > 0 ? 1.0 / static_cast<double>(N) : 0.0;
    xent_rows(logits, labels, probs, N, K, scale, row_loss, loss, dlogits);
}

CNNKIT_INSTANTIATE_LOSS(float)
CNNKIT_INSTANTIATE_LOSS(double)

}  // namespace cpu
}  // namespace cnnkit
