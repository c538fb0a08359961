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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu/kernels.h"
#include "cpu/simd.h"
#include "cpu/vecmath.h"

// GCC's default -ftrapping-math keeps it from if-converting a select whose arm does arithmetic
// (x < 0 ? alpha * x : x), so such loops would not vectorize; no kernel here reads the FP
// exception flags, so the kernels are compiled without it (the bindings, in bind_cpu.cpp, are not).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

namespace cnnkit {
namespace cpu {
// Internal linkage for everything but the entry points (kernels.inc): another family's file may well
// define a helper of the same name (row_max, for_rows), which would otherwise be an ODR clash.
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
// lines were just read). The lanewise selects give the same NaN and -0 results as relu_of.
#if defined(__SSE2__) && defined(__GNUC__)
constexpr index_t kStreamBytes = index_t(1) << 25;  // 32 MiB

// 16 bytes of T (GNU vectors: one SSE2 register) and the streaming store of one.
template <class T>
struct Sse2 {
    typedef T V __attribute__((vector_size(16)));
    static constexpr index_t lanes = 16 / sizeof(T);
    static V load(const T* p) {
        V v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    static void stream(T* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), (__m128i)v); }
    static V relu(V v) { return v < V{} ? V{} : v; }
    static V relu_grad(V g, V v) { return v <= V{} ? V{} : g; }
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
#if defined(__SSE2__) && defined(__GNUC__)
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
#if defined(__SSE2__) && defined(__GNUC__)
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
CNNKIT_SIMD_CLONES void leaky_relu_backward_span(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T g = dy[i], v = x[i];
        dx[i] = v > T(0) ? g : alpha * g;
    }
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
CNNKIT_SIMD_CLONES void elu_backward_span(const T* dy, const T* x, T* dx, index_t n, T alpha) {
    for (index_t i = 0; i < n; ++i) {
        const T g = dy[i], v = x[i];
        const T neg = alpha * exp_nonpos(v > T(0) ? T(0) : v) * g;
        dx[i] = v > T(0) ? g : neg;
    }
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
CNNKIT_SIMD_CLONES void sigmoid_backward_span(const T* dy, const T* x, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) {
        const T e = exp_nonpos(-magnitude(x[i]));
        const T r = T(1) / (T(1) + e);
        dx[i] = dy[i] * (e * r * r);
    }
}

template <class T>
CNNKIT_SIMD_CLONES void sigmoid_backward_from_output_span(const T* dy, const T* y, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] * (T(1) - y[i]));
}

// tanh: dx = dy (1 - tanh(x)^2). From x, 1 - tanh(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|),
// which keeps its relative accuracy where tanh(x) rounds to +-1 (1 - t t would give 0 there).
template <class T>
CNNKIT_SIMD_CLONES void tanh_forward_span(const T* x, T* y, index_t n) {
    for (index_t i = 0; i < n; ++i) y[i] = tanh_any(x[i]);
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
CNNKIT_SIMD_CLONES void tanh_backward_from_output_span(const T* dy, const T* y, T* dx, index_t n) {
    for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax over the last axis of a (rows, cols) array, one row per call of a *_row.
// The row maximum is subtracted before exp (every exp argument is <= 0: no overflow).
// Row sums of exps are sum_exp_blocks (vecmath.h) over blocks of kRowBlock elements.
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
    const double sum = sum_exp_blocks<kRowBlock>(x, cols, m, y);
    const T inv = static_cast<T>(1.0 / sum);
    for (index_t j = 0; j < cols; ++j) y[j] *= inv;
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

// log_softmax: y = (x - max) - log(sum exp(x - max)). x - max is exact for x near the maximum, and
// the log is small; adding max to the log first would round it to the ulp of max (1e-3 at 1e4).
template <class T>
CNNKIT_SIMD_CLONES void log_softmax_row(const T* x, T* y, index_t cols) {
    const T m = row_max(x, cols);
    const double sum = sum_exp_blocks<kRowBlock>(x, cols, m, static_cast<T*>(nullptr));
    const T lse = static_cast<T>(std::log(sum));
    for (index_t j = 0; j < cols; ++j) y[j] = (x[j] - m) - lse;
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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points (kernels.inc): each op picks its span or row kernel and its threshold for threads
// (a tenth of the elements where the op computes an exp: each element costs more), relu its
// streaming path.

template <class T>
void unary_forward(Unary op, const T* x, T* y, index_t n, Stream) {
    if (op == Unary::relu) return relu_forward(x, y, n);
    const auto span = op == Unary::sigmoid ? &sigmoid_forward_span<T> : &tanh_forward_span<T>;
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) { span(x + b, y + b, e - b); });
}

template <class T>
void binary_backward(Binary op, const T* dy, const T* v, T* dx, index_t n, Stream) {
    if (op == Binary::relu) return relu_backward(dy, v, dx, n);
    void (*span)(const T*, const T*, T*, index_t) = nullptr;
    switch (op) {
        case Binary::sigmoid: span = &sigmoid_backward_span<T>; break;
        case Binary::sigmoid_from_output: span = &sigmoid_backward_from_output_span<T>; break;
        case Binary::tanh: span = &tanh_backward_span<T>; break;
        default: span = &tanh_backward_from_output_span<T>; break;
    }
    const bool exps = op == Binary::sigmoid || op == Binary::tanh;
    for_chunks(n, exps ? kParallelMin / 8 : kParallelMin,
               [=](index_t b, index_t e) { span(dy + b, v + b, dx + b, e - b); });
}

template <class T>
void alpha_forward(Alpha op, const T* x, T* y, index_t n, T alpha, Stream) {
    const bool elu = op == Alpha::elu;
    const auto span = elu ? &elu_forward_span<T> : &leaky_relu_forward_span<T>;
    for_chunks(n, elu ? kParallelMin / 8 : kParallelMin,
               [=](index_t b, index_t e) { span(x + b, y + b, e - b, alpha); });
}

template <class T>
void alpha_backward(Alpha op, const T* dy, const T* x, T* dx, index_t n, T alpha, Stream) {
    const bool elu = op == Alpha::elu;
    const auto span = elu ? &elu_backward_span<T> : &leaky_relu_backward_span<T>;
    for_chunks(n, elu ? kParallelMin / 8 : kParallelMin,
               [=](index_t b, index_t e) { span(dy + b, x + b, dx + b, e - b, alpha); });
}

template <class T>
void rows_forward(Rows op, const T* x, T* y, index_t rows, index_t cols, Stream) {
    if (cols == 0) return;
    const auto row = op == Rows::softmax ? &softmax_row<T> : &log_softmax_row<T>;
    for_rows(rows, cols, [=](index_t r) { row(x + r * cols, y + r * cols, cols); });
}

template <class T>
void rows_backward(RowsBack op, const T* dy, const T* v, T* dx, index_t rows, index_t cols, Stream) {
    if (cols == 0) return;
    void (*row)(const T*, const T*, T*, index_t) = nullptr;
    switch (op) {
        case RowsBack::softmax: row = &softmax_backward_row<T>; break;
        case RowsBack::softmax_from_output: row = &softmax_backward_from_output_row<T>; break;
        case RowsBack::log_softmax: row = &log_softmax_backward_row<T>; break;
        default: row = &log_softmax_backward_from_output_row<T>; break;
    }
    for_rows(rows, cols, [=](index_t r) { row(dy + r * cols, v + r * cols, dx + r * cols, cols); });
}

template <class T>
void dropout_forward(const T* x, T* y, index_t n, double rate, std::uint64_t seed, Stream) {
    const std::uint64_t key = rng_key(seed);
    const std::uint64_t threshold = dropout_threshold(rate);
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    for_chunks(n, kParallelMin / 8, [=](index_t b, index_t e) {
        dropout_span(x, y, b, e, key, threshold, scale);
    });
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

CNNKIT_INSTANTIATE_ACTIVATION(float)
CNNKIT_INSTANTIATE_ACTIVATION(double)

}  // namespace cpu
}  // namespace cnnkit
