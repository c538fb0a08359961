// activation.cpp: activations (relu, leaky_relu, elu, sigmoid, tanh), softmax/log_softmax and
// inverted dropout, forward and backward, float and double. Elementwise kernels see a flat C-order
// array (any layout, NHWC here); softmax/log_softmax see (rows, cols) and normalize each row.
// OpenMP splits element chunks or rows statically over threads (tiny arrays stay on one thread);
// loops are branch-free selects that vectorize, also built for AVX2/AVX-512 (target_clones).
// Dropout draws uniform01(seed, flat index) (common.h): the mask never depends on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "bind_util.h"
#include "cpu/simd.h"

// GCC's default -ftrapping-math keeps it from if-converting a select whose arm does arithmetic
// (x < 0 ? alpha * x : x), so such loops would not vectorize; no kernel here reads the FP
// exception flags, so the kernels are compiled without it (the bindings below are not).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

namespace cnnkit {
// Internal linkage for everything but bind_activation: another family's file may well define a
// kernel or helper of the same name (softmax_forward, for_rows), which would otherwise be an ODR clash.
namespace {

// Below this many elements a kernel runs on the calling thread (thread start-up is ~microseconds).
constexpr index_t kParallelMin = 1 << 15;

// f(begin, end) over [0, n) in chunks of 8192 elements, chunks split statically over the threads
// (contiguous blocks per thread, as a static parallel for over elements would give).
template <class F>
void for_chunks(index_t n, index_t min_parallel, F f) {
    constexpr index_t chunk = 8192;
    const index_t count = (n + chunk - 1) / chunk;
    (void)min_parallel;  // used by the pragma only
#pragma omp parallel for schedule(static) if (n > min_parallel)
    for (index_t c = 0; c < count; ++c) f(c * chunk, c + 1 < count ? (c + 1) * chunk : n);
}

// ---------------------------------------------------------------------------------------------
// Vectorizable math. std::exp/expm1/tanh are libm calls, which GCC vectorizes only under
// -ffast-math; the float versions below use only arithmetic and selects, so loops calling them
// vectorize. They follow Cephes (expf, tanhf), accurate to a few ulp. double keeps libm.
// Each loop computes both sides of a select (clamping the argument of the side not taken, so it
// cannot overflow), which is what vectorized code does anyway.

// |x| (std::abs comes from outside this file's optimize region, and GCC would not inline it).
template <class T>
inline T magnitude(T x) {
    return x < T(0) ? -x : x;
}

// exp(x) for x <= 0 (the only arguments used here). x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite
// split of ln2), e^r from a degree-6 polynomial, 2^n from exponent bits; 0 below ln(FLT_MIN)
// (no subnormal results), NaN stays NaN.
inline float exp_nonpos(float x) {
    constexpr float lo = -87.3365447f;  // ln(FLT_MIN)
    const float xc = x >= lo ? x : lo;  // also maps NaN to lo, keeping the int conversion defined
    const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln2): 1.5 * 2^23 trick
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const float e = p * scale;
    return x >= lo ? e : (x < lo ? 0.0f : x);
}
inline double exp_nonpos(double x) { return std::exp(x); }

// expm1(x) for x <= 0: Taylor series to x^8 near 0 (truncation < 2e-8 relative for x > -0.5),
// exp(x) - 1 below, where exp(x) < 0.61 leaves no cancellation.
inline float expm1_nonpos(float x) {
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
inline double expm1_nonpos(double x) { return std::expm1(x); }

// tanh: an odd polynomial for |x| < 0.625 (Cephes tanhf), (1 - e) / (1 + e) with e = exp(-2|x|)
// beyond, where 1 - e has no cancellation. Never overflows.
inline float tanh_any(float x) {
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
inline double tanh_any(double x) { return std::tanh(x); }

// ---------------------------------------------------------------------------------------------
// relu: y = x < 0 ? 0 : x (NaN passes through, as in PyTorch); dx = v <= 0 ? 0 : dy, where v is
// the input or the output (same sign), so the gradient at 0 is 0 (and at NaN it is dy, as PyTorch).
template <class T>
inline T relu_of(T v) {
    return v < T(0) ? T(0) : v;
}
template <class T>
inline T relu_grad_of(T g, T v) {
    return v <= T(0) ? T(0) : g;
}

template <class T>
CNNKIT_SIMD_CLONES void relu_forward_span(const T* x, T* y, index_t n) {
    for (index_t i = 0; i < n; ++i) y[i] = relu_of(x[i]);
}

template <class T>
CNNKIT_SIMD_CLONES void relu_backward_span(const T* dy, const T* v, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) dx[i] = relu_grad_of(dy[i], v[i]);
}

// relu is memory-bound. A large output (>= kStreamBytes: far beyond the caches, so its consumer
// reads it from memory anyway) is written with SSE2 non-temporal stores, which skip reading each
// output line before overwriting it: a third less traffic for y = relu(x). Not in place (those
// lines were just read). The SSE2 compare-and-mask gives the same NaN and -0 results as relu_of.
#if defined(__SSE2__)
constexpr index_t kStreamBytes = index_t(1) << 25;  // 32 MiB

template <class T>
struct Sse2;
template <>
struct Sse2<float> {
    using V = __m128;
    static constexpr index_t lanes = 4;
    static V load(const float* p) { return _mm_loadu_ps(p); }
    static void stream(float* p, V v) { _mm_stream_ps(p, v); }
    static V relu(V v) { return _mm_andnot_ps(_mm_cmplt_ps(v, _mm_setzero_ps()), v); }
    static V relu_grad(V g, V v) { return _mm_andnot_ps(_mm_cmple_ps(v, _mm_setzero_ps()), g); }
};
template <>
struct Sse2<double> {
    using V = __m128d;
    static constexpr index_t lanes = 2;
    static V load(const double* p) { return _mm_loadu_pd(p); }
    static void stream(double* p, V v) { _mm_stream_pd(p, v); }
    static V relu(V v) { return _mm_andnot_pd(_mm_cmplt_pd(v, _mm_setzero_pd()), v); }
    static V relu_grad(V g, V v) { return _mm_andnot_pd(_mm_cmple_pd(v, _mm_setzero_pd()), g); }
};

template <class T>
bool worth_streaming(const T* out, index_t n) {
    return n * static_cast<index_t>(sizeof(T)) >= kStreamBytes &&
           reinterpret_cast<std::uintptr_t>(out) % sizeof(T) == 0;
}

// scalar(i) for the elements before out + i is 16-byte aligned and after the last whole vector,
// vector(i) for each vector of lanes elements in between (threads split those statically).
template <class T, class V, class S>
void stream_map(const T* out, index_t n, V vector, S scalar) {
    const index_t lanes = Sse2<T>::lanes;
    const auto misalign = reinterpret_cast<std::uintptr_t>(out) % 16;
    const index_t head = std::min<index_t>(n, (16 - misalign) % 16 / sizeof(T));
    const index_t count = (n - head) / lanes;
    for (index_t i = 0; i < head; ++i) scalar(i);
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (index_t k = 0; k < count; ++k) vector(head + k * lanes);
        _mm_sfence();  // each thread orders its own streaming stores before the region ends
    }
    for (index_t i = head + count * lanes; i < n; ++i) scalar(i);
}
#endif

template <class T>
void relu_forward(const T* x, T* y, index_t n) {
#if defined(__SSE2__)
    if (x != y && worth_streaming(y, n)) {
        using S = Sse2<T>;
        stream_map(y, n, [=](index_t i) { S::stream(y + i, S::relu(S::load(x + i))); },
                   [=](index_t i) { y[i] = relu_of(x[i]); });
        return;
    }
#endif
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        relu_forward_span(x + b, y + b, e - b);
    });
}

template <class T>
void relu_backward(const T* dy, const T* v, T* dx, index_t n) {
#if defined(__SSE2__)
    if (dx != dy && dx != v && worth_streaming(dx, n)) {
        using S = Sse2<T>;
        stream_map(dx, n,
                   [=](index_t i) { S::stream(dx + i, S::relu_grad(S::load(dy + i), S::load(v + i))); },
                   [=](index_t i) { dx[i] = relu_grad_of(dy[i], v[i]); });
        return;
    }
#endif
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        relu_backward_span(dy + b, v + b, dx + b, e - b);
    });
}

// leaky_relu: y = x < 0 ? alpha x : x; dx = x > 0 ? dy : alpha dy (alpha at 0, like PyTorch/TF).
template <class T>
CNNKIT_SIMD_CLONES void leaky_relu_forward_span(const T* x, T* y, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T v = x[i];
        y[i] = v < T(0) ? alpha * v : v;
    }
}

template <class T>
void leaky_relu_forward(const T* x, T* y, index_t n, T alpha) {
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        leaky_relu_forward_span(x + b, y + b, e - b, alpha);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void leaky_relu_backward_span(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T g = dy[i], v = x[i];
        dx[i] = v > T(0) ? g : alpha * g;
    }
}

template <class T>
void leaky_relu_backward(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        leaky_relu_backward_span(dy + b, x + b, dx + b, e - b, alpha);
    });
}

// elu: y = x > 0 ? x : alpha expm1(x); dx = x > 0 ? dy : alpha exp(x) dy.
// expm1/exp of min(x, 0) only, so large positive x never overflows the unused side.
template <class T>
CNNKIT_SIMD_CLONES void elu_forward_span(const T* x, T* y, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T v = x[i];
        const T neg = alpha * expm1_nonpos(v > T(0) ? T(0) : v);
        y[i] = v > T(0) ? v : neg;
    }
}

template <class T>
void elu_forward(const T* x, T* y, index_t n, T alpha) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        elu_forward_span(x + b, y + b, e - b, alpha);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void elu_backward_span(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T g = dy[i], v = x[i];
        const T neg = alpha * exp_nonpos(v > T(0) ? T(0) : v) * g;
        dx[i] = v > T(0) ? g : neg;
    }
}

template <class T>
void elu_backward(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        elu_backward_span(dy + b, x + b, dx + b, e - b, alpha);
    });
}

// sigmoid with e = exp(-|x|) <= 1, which never overflows: s = 1 / (1 + e) for x >= 0 and
// e / (1 + e) for x < 0; s (1 - s) = e / (1 + e)^2 on both sides, without the cancellation of 1 - s.
template <class T>
CNNKIT_SIMD_CLONES void sigmoid_forward_span(const T* x, T* y, index_t n) {
    for (index_t i = 0; i < n; ++i) {
        const T v = x[i];
        const T e = exp_nonpos(-magnitude(v));
        const T r = T(1) / (T(1) + e);
        y[i] = v >= T(0) ? r : e * r;
    }
}

template <class T>
void sigmoid_forward(const T* x, T* y, index_t n) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        sigmoid_forward_span(x + b, y + b, e - b);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void sigmoid_backward_span(const T* dy, const T* x, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) {
        const T e = exp_nonpos(-magnitude(x[i]));
        const T r = T(1) / (T(1) + e);
        dx[i] = dy[i] * (e * r * r);
    }
}

template <class T>
void sigmoid_backward(const T* dy, const T* x, T* dx, index_t n) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        sigmoid_backward_span(dy + b, x + b, dx + b, e - b);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void sigmoid_backward_from_output_span(const T* dy, const T* y, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] * (T(1) - y[i]));
}

template <class T>
void sigmoid_backward_from_output(const T* dy, const T* y, T* dx, index_t n) {
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        sigmoid_backward_from_output_span(dy + b, y + b, dx + b, e - b);
    });
}

// tanh: dx = dy (1 - tanh(x)^2). From x, 1 - tanh(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|),
// which keeps its relative accuracy where tanh(x) rounds to +-1 (1 - t t would give 0 there).
template <class T>
CNNKIT_SIMD_CLONES void tanh_forward_span(const T* x, T* y, index_t n) {
    for (index_t i = 0; i < n; ++i) y[i] = tanh_any(x[i]);
}

template <class T>
void tanh_forward(const T* x, T* y, index_t n) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        tanh_forward_span(x + b, y + b, e - b);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void tanh_backward_span(const T* dy, const T* x, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) {
        const T e = exp_nonpos(T(-2) * magnitude(x[i]));
        const T r = T(1) / (T(1) + e);
        dx[i] = dy[i] * (T(4) * e * r * r);
    }
}

template <class T>
void tanh_backward(const T* dy, const T* x, T* dx, index_t n) {
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        tanh_backward_span(dy + b, x + b, dx + b, e - b);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void tanh_backward_from_output_span(const T* dy, const T* y, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

template <class T>
void tanh_backward_from_output(const T* dy, const T* y, T* dx, index_t n) {
    for_chunks(n, kParallelMin, [=](index_t b, index_t e) {
        tanh_backward_from_output_span(dy + b, y + b, dx + b, e - b);
    });
}

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax over the last axis of a (rows, cols) array, one row per call of a *_row.
// The row maximum is subtracted before exp (every exp argument is <= 0: no overflow).
// Row sums are SIMD reductions in T over blocks of kRowBlock elements, the block sums added in
// double: summing float lanes runs about twice as fast as converting every term to double, and
// the rounding stays bounded by the block length (not the row length) for any row.
// Every kernel may run in place (y == x, dx == dy): each row is read fully before the pass that
// overwrites it.

constexpr index_t kRowBlock = 256;

template <class T>
T row_max(const T* x, index_t cols) {
    T m = x[0];
#pragma omp simd reduction(max : m)
    for (index_t j = 1; j < cols; ++j) m = x[j] > m ? x[j] : m;
    return m;
}

// f(r) for each row r, rows split statically over the threads.
template <class F>
void for_rows(index_t rows, index_t cols, F f) {
    (void)cols;  // used by the pragma only
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin / 8 && rows > 1)
    for (index_t r = 0; r < rows; ++r) f(r);
}

// y = e / sum(e) with e = exp(x - max), e stored in y on the way.
template <class T>
CNNKIT_SIMD_CLONES void softmax_row(const T* x, T* y, index_t cols) {
    const T m = row_max(x, cols);
    double sum = 0;
    for (index_t b = 0; b < cols; b += kRowBlock) {
        const index_t end = std::min(cols, b + kRowBlock);
        T part = 0;
#pragma omp simd reduction(+ : part)
        for (index_t j = b; j < end; ++j) {
            y[j] = exp_nonpos(x[j] - m);
            part += y[j];
        }
        sum += part;
    }
    const T inv = static_cast<T>(1.0 / sum);
    for (index_t j = 0; j < cols; ++j) y[j] *= inv;
}

template <class T>
void softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
    if (cols == 0) return;
    for_rows(rows, cols, [=](index_t r) { softmax_row(x + r * cols, y + r * cols, cols); });
}

// The backward passes subtract a row sum from each element (dy - sum(dy y), dy - p sum(dy)); where
// the two nearly cancel (a peaked softmax whose winner's dy is close to the sum) float rounding of
// the sum, or of y, is amplified a thousand times. So these rows work in double from the inputs
// they are given and round once at the end: dx is then exact to float rounding of the true value,
// where float sums left 2% of random 7-wide rows with errors above 1e-5 of the largest |dx|.
// Training rarely runs them (softmax + cross-entropy takes the fused kernel), so the halved SIMD
// width costs little.

// dx = y (dy - sum(dy y)), given the output y.
template <class T>
CNNKIT_SIMD_CLONES void softmax_backward_from_output_row(const T* dy, const T* y, T* dx, index_t cols) {
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (index_t j = 0; j < cols; ++j) dot += double(dy[j]) * double(y[j]);
    for (index_t j = 0; j < cols; ++j) dx[j] = static_cast<T>(double(y[j]) * (double(dy[j]) - dot));
}

template <class T>
void softmax_backward_from_output(const T* dy, const T* y, T* dx, index_t rows, index_t cols) {
    for_rows(rows, cols, [=](index_t r) {
        softmax_backward_from_output_row(dy + r * cols, y + r * cols, dx + r * cols, cols);
    });
}

// The same from the input, recomputing exp(x - max) in double rather than storing it (dx may be dy).
template <class T>
CNNKIT_SIMD_CLONES void softmax_backward_row(const T* dy, const T* x, T* dx, index_t cols) {
    const double m = row_max(x, cols);
    double sum = 0, dot = 0;  // sum(e) and sum(dy e) with e = exp(x - max); y = e / sum
#pragma omp simd reduction(+ : sum, dot)
    for (index_t j = 0; j < cols; ++j) {
        const double e = std::exp(double(x[j]) - m);
        sum += e;
        dot += double(dy[j]) * e;
    }
    const double inv = 1.0 / sum, d = dot / sum;
    for (index_t j = 0; j < cols; ++j) dx[j] = static_cast<T>(std::exp(double(x[j]) - m) * inv * (double(dy[j]) - d));
}

template <class T>
void softmax_backward(const T* dy, const T* x, T* dx, index_t rows, index_t cols) {
    if (cols == 0) return;
    for_rows(rows, cols, [=](index_t r) {
        softmax_backward_row(dy + r * cols, x + r * cols, dx + r * cols, cols);
    });
}

// log_softmax: y = (x - max) - log(sum exp(x - max)). x - max is exact for x near the maximum, and
// the log is small; adding max to the log first would round it to the ulp of max (1e-3 at 1e4).
template <class T>
CNNKIT_SIMD_CLONES void log_softmax_row(const T* x, T* y, index_t cols) {
    const T m = row_max(x, cols);
    double sum = 0;
    for (index_t b = 0; b < cols; b += kRowBlock) {
        const index_t end = std::min(cols, b + kRowBlock);
        T part = 0;
#pragma omp simd reduction(+ : part)
        for (index_t j = b; j < end; ++j) part += exp_nonpos(x[j] - m);
        sum += part;
    }
    const T lse = static_cast<T>(std::log(sum));
    for (index_t j = 0; j < cols; ++j) y[j] = (x[j] - m) - lse;
}

template <class T>
void log_softmax_forward(const T* x, T* y, index_t rows, index_t cols) {
    if (cols == 0) return;
    for_rows(rows, cols, [=](index_t r) { log_softmax_row(x + r * cols, y + r * cols, cols); });
}

// dx = dy - softmax(x) sum(dy), where softmax(x) = exp(y); in double, as above.
template <class T>
CNNKIT_SIMD_CLONES void log_softmax_backward_from_output_row(const T* dy, const T* y, T* dx, index_t cols) {
    double total = 0;
#pragma omp simd reduction(+ : total)
    for (index_t j = 0; j < cols; ++j) total += double(dy[j]);
    for (index_t j = 0; j < cols; ++j) dx[j] = static_cast<T>(double(dy[j]) - std::exp(double(y[j])) * total);
}

template <class T>
void log_softmax_backward_from_output(const T* dy, const T* y, T* dx, index_t rows, index_t cols) {
    for_rows(rows, cols, [=](index_t r) {
        log_softmax_backward_from_output_row(dy + r * cols, y + r * cols, dx + r * cols, cols);
    });
}

template <class T>
CNNKIT_SIMD_CLONES void log_softmax_backward_row(const T* dy, const T* x, T* dx, index_t cols) {
    const double m = row_max(x, cols);
    double sum = 0, total = 0;
#pragma omp simd reduction(+ : sum, total)
    for (index_t j = 0; j < cols; ++j) {
        sum += std::exp(double(x[j]) - m);
        total += double(dy[j]);
    }
    const double lse = std::log(sum);
    for (index_t j = 0; j < cols; ++j) dx[j] = static_cast<T>(double(dy[j]) - std::exp((double(x[j]) - m) - lse) * total);
}

template <class T>
void log_softmax_backward(const T* dy, const T* x, T* dx, index_t rows, index_t cols) {
    if (cols == 0) return;
    for_rows(rows, cols, [=](index_t r) {
        log_softmax_backward_row(dy + r * cols, x + r * cols, dx + r * cols, cols);
    });
}

// ---------------------------------------------------------------------------------------------
// Inverted dropout: element i is kept iff uniform01(seed, i) >= rate, and kept elements are scaled
// by 1 / (1 - rate). uniform01 is (z >> 11) * 2^-53, exact in double, so the test is the integer
// comparison (z >> 11) >= ceil(rate * 2^53), bit-identical to comparing the doubles.
// The backward applies the same mask to dy.

// dropout_threshold (common.h) is shared with csrc/cuda/activation.cu.

// Elements [begin, end) of the flat array (the hash takes the global index).
template <class T>
CNNKIT_SIMD_CLONES void dropout_span(const T* x, T* y, index_t begin, index_t end, std::uint64_t key,
                              std::uint64_t threshold, T scale) {
    for (index_t i = begin; i < end; ++i) {
        const T kept = x[i] * scale;
        y[i] = rng_bits(key, static_cast<std::uint64_t>(i)) >= threshold ? kept : T(0);
    }
}

template <class T>
void dropout_forward(const T* x, T* y, index_t n, double rate, std::uint64_t seed) {
    const std::uint64_t key = rng_key(seed);
    const std::uint64_t threshold = dropout_threshold(rate);
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        dropout_span(x, y, b, e, key, threshold, scale);
    });
}

}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------------------------------------
// Bindings: shapes, dtypes, contiguity and writability are checked here again (the Python layer
// checked first), then the GIL is released around the kernel.

namespace {

// a has the dtype T, is C-contiguous (and writable when asked) and has the same shape as ref.
template <class T>
index_t check_like(const py::array& a, const char* name, const py::array& ref, const char* ref_name,
                   bool writable) {
    const index_t n = check_array<T>(a, name, {}, writable);
    bool same = a.ndim() == ref.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == ref.shape(i);
    if (!same)
        throw std::invalid_argument(std::string(name) + " has shape " + shape_str(a) + " but " + ref_name +
                                    " has shape " + shape_str(ref));
    return n;
}

template <class T>
T finite_param(double v, const char* name, bool nonnegative) {
    require(std::isfinite(v) && (!nonnegative || v >= 0),
            std::string(name) + " must be a finite number" + (nonnegative ? " >= 0" : "") + ", got " +
                std::to_string(v));
    return static_cast<T>(v);
}

// (rows, cols) of an array normalized over its last axis.
std::pair<index_t, index_t> rows_cols(const py::array& a, const char* name) {
    require(a.ndim() >= 1, std::string(name) + " must have at least 1 dimension");
    const index_t cols = a.shape(a.ndim() - 1);
    index_t rows = 1;
    for (py::ssize_t i = 0; i + 1 < a.ndim(); ++i) rows *= a.shape(i);
    return {rows, cols};
}

// f(x, y) elementwise forward: y = f(x).
template <template <class> class K>
void def_unary(py::module_& m, const char* name, const char* doc) {
    m.def(name, [](const py::array& x, py::array& y) {
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_array<T>(x, "x", {});
            check_like<T>(y, "y", x, "x", true);
            const T* xp = static_cast<const T*>(x.data());
            T* yp = static_cast<T*>(y.mutable_data());
            py::gil_scoped_release nogil;
            K<T>::run(xp, yp, n);
        });
    }, py::arg("x"), py::arg("y"), doc);
}

// dx = f'(v) dy elementwise, v being the forward input or output (named v_name).
template <template <class> class K>
void def_binary(py::module_& m, const char* name, const char* v_name, const char* doc) {
    m.def(name, [v_name](const py::array& dy, const py::array& v, py::array& dx) {
        dispatch_float(float_dtype(v, v_name), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_array<T>(v, v_name, {});
            check_like<T>(dy, "dy", v, v_name, false);
            check_like<T>(dx, "dx", v, v_name, true);
            const T* dyp = static_cast<const T*>(dy.data());
            const T* vp = static_cast<const T*>(v.data());
            T* dxp = static_cast<T*>(dx.mutable_data());
            py::gil_scoped_release nogil;
            K<T>::run(dyp, vp, dxp, n);
        });
    }, py::arg("dy"), py::arg(v_name), py::arg("dx"), doc);
}

// Adapters giving each kernel the uniform static run(...) the binding helpers call.
#define CNNKIT_UNARY(K)                                                                   \
    template <class T>                                                                    \
    struct K##_k {                                                                        \
        static void run(const T* x, T* y, index_t n) { K<T>(x, y, n); }                   \
    };
#define CNNKIT_BINARY(K)                                                                  \
    template <class T>                                                                    \
    struct K##_k {                                                                        \
        static void run(const T* dy, const T* v, T* dx, index_t n) { K<T>(dy, v, dx, n); } \
    };
CNNKIT_UNARY(relu_forward)
CNNKIT_UNARY(sigmoid_forward)
CNNKIT_UNARY(tanh_forward)
CNNKIT_BINARY(relu_backward)
CNNKIT_BINARY(sigmoid_backward)
CNNKIT_BINARY(sigmoid_backward_from_output)
CNNKIT_BINARY(tanh_backward)
CNNKIT_BINARY(tanh_backward_from_output)
#undef CNNKIT_UNARY
#undef CNNKIT_BINARY

template <class T>
using RowKernel = void (*)(const T*, T*, index_t, index_t);
template <class T>
using RowBackKernel = void (*)(const T*, const T*, T*, index_t, index_t);

}  // namespace

void bind_activation(py::module_& m) {
    def_unary<relu_forward_k>(m, "relu_forward", "y = relu(x) (y may be x)");
    def_binary<relu_backward_k>(m, "relu_backward", "v", "dx = dy where v > 0 else 0; v = x or relu(x)");
    def_unary<sigmoid_forward_k>(m, "sigmoid_forward", "y = sigmoid(x) (y may be x)");
    def_binary<sigmoid_backward_k>(m, "sigmoid_backward", "x", "dx = dy sigmoid'(x)");
    def_binary<sigmoid_backward_from_output_k>(m, "sigmoid_backward_from_output", "y",
                                               "dx = dy y (1 - y), y = sigmoid(x)");
    def_unary<tanh_forward_k>(m, "tanh_forward", "y = tanh(x) (y may be x)");
    def_binary<tanh_backward_k>(m, "tanh_backward", "x", "dx = dy (1 - tanh(x)^2)");
    def_binary<tanh_backward_from_output_k>(m, "tanh_backward_from_output", "y",
                                            "dx = dy (1 - y^2), y = tanh(x)");

    // Elementwise ops with a scalar alpha.
    auto def_alpha = [&m](const char* fwd_name, const char* bwd_name, bool nonnegative, auto fwd,
                          auto bwd) {
        m.def(fwd_name, [=](const py::array& x, py::array& y, double alpha) {
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                const T a = finite_param<T>(alpha, "alpha", nonnegative);
                const index_t n = check_array<T>(x, "x", {});
                check_like<T>(y, "y", x, "x", true);
                const T* xp = static_cast<const T*>(x.data());
                T* yp = static_cast<T*>(y.mutable_data());
                py::gil_scoped_release nogil;
                fwd(xp, yp, n, a);
            });
        }, py::arg("x"), py::arg("y"), py::arg("alpha"));
        m.def(bwd_name, [=](const py::array& dy, const py::array& x, py::array& dx, double alpha) {
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                const T a = finite_param<T>(alpha, "alpha", nonnegative);
                const index_t n = check_array<T>(x, "x", {});
                check_like<T>(dy, "dy", x, "x", false);
                check_like<T>(dx, "dx", x, "x", true);
                const T* dyp = static_cast<const T*>(dy.data());
                const T* xp = static_cast<const T*>(x.data());
                T* dxp = static_cast<T*>(dx.mutable_data());
                py::gil_scoped_release nogil;
                bwd(dyp, xp, dxp, n, a);
            });
        }, py::arg("dy"), py::arg("x"), py::arg("dx"), py::arg("alpha"));
    };
    def_alpha("leaky_relu_forward", "leaky_relu_backward", true,
              [](auto x, auto y, index_t n, auto a) { leaky_relu_forward(x, y, n, a); },
              [](auto dy, auto x, auto dx, index_t n, auto a) { leaky_relu_backward(dy, x, dx, n, a); });
    def_alpha("elu_forward", "elu_backward", false,
              [](auto x, auto y, index_t n, auto a) { elu_forward(x, y, n, a); },
              [](auto dy, auto x, auto dx, index_t n, auto a) { elu_backward(dy, x, dx, n, a); });

    // Row-wise ops over the last axis.
    auto def_rows = [&m](const char* name, auto pick) {
        m.def(name, [=](const py::array& x, py::array& y) {
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                check_array<T>(x, "x", {});
                check_like<T>(y, "y", x, "x", true);
                const auto [rows, cols] = rows_cols(x, "x");
                const T* xp = static_cast<const T*>(x.data());
                T* yp = static_cast<T*>(y.mutable_data());
                RowKernel<T> k = pick(t);
                py::gil_scoped_release nogil;
                k(xp, yp, rows, cols);
            });
        }, py::arg("x"), py::arg("y"), "normalizes each row (the last axis); y may be x");
    };
    auto def_rows_back = [&m](const char* name, const char* v_name, auto pick) {
        m.def(name, [=](const py::array& dy, const py::array& v, py::array& dx) {
            dispatch_float(float_dtype(v, v_name), [&](auto t) {
                using T = decltype(t);
                check_array<T>(v, v_name, {});
                check_like<T>(dy, "dy", v, v_name, false);
                check_like<T>(dx, "dx", v, v_name, true);
                const auto [rows, cols] = rows_cols(v, v_name);
                const T* dyp = static_cast<const T*>(dy.data());
                const T* vp = static_cast<const T*>(v.data());
                T* dxp = static_cast<T*>(dx.mutable_data());
                RowBackKernel<T> k = pick(t);
                py::gil_scoped_release nogil;
                k(dyp, vp, dxp, rows, cols);
            });
        }, py::arg("dy"), py::arg(v_name), py::arg("dx"), "gradient over each row (the last axis)");
    };
    def_rows("softmax_forward", [](auto t) { return &softmax_forward<decltype(t)>; });
    def_rows("log_softmax_forward", [](auto t) { return &log_softmax_forward<decltype(t)>; });
    def_rows_back("softmax_backward", "x", [](auto t) { return &softmax_backward<decltype(t)>; });
    def_rows_back("softmax_backward_from_output", "y",
                  [](auto t) { return &softmax_backward_from_output<decltype(t)>; });
    def_rows_back("log_softmax_backward", "x", [](auto t) { return &log_softmax_backward<decltype(t)>; });
    def_rows_back("log_softmax_backward_from_output", "y",
                  [](auto t) { return &log_softmax_backward_from_output<decltype(t)>; });

    // Dropout: forward y = mask * x / (1 - rate); the backward is the same map applied to dy.
    m.def("dropout_forward", [](const py::array& x, py::array& y, double rate, std::uint64_t seed) {
        require(rate >= 0 && rate < 1, "rate must be in [0, 1), got " + std::to_string(rate));
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_array<T>(x, "x", {});
            check_like<T>(y, "y", x, "x", true);
            const T* xp = static_cast<const T*>(x.data());
            T* yp = static_cast<T*>(y.mutable_data());
            py::gil_scoped_release nogil;
            dropout_forward(xp, yp, n, rate, seed);
        });
    }, py::arg("x"), py::arg("y"), py::arg("rate"), py::arg("seed"),
       "y[i] = x[i] / (1 - rate) if uniform01(seed, i) >= rate else 0 (also the backward, on dy)");
}

}  // namespace cnnkit
