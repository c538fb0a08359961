// activation.cu: the CUDA twin of csrc/cpu/activation.cpp: relu, leaky_relu, elu, sigmoid, tanh
// forward and backward, softmax/log_softmax over the last axis, inverted dropout.
// Elementwise kernels: grid-stride loops over the flat array, the CPU's formulas (the same NaN and
// zero rules: relu passes NaN, its gradient at 0 is 0; sigmoid and tanh from e = exp(-|x|), which
// never overflows), CUDA's libm (expf, expm1f, tanhf: within 2 ulp) instead of the CPU's
// vectorizable polynomials. In place (y == x) is fine: each element is read before it is written.
// Row kernels: one block per row (grid-stride over rows), the row maximum and sums by a
// deterministic block reduction in double; each row is fully read before the pass that writes it,
// so they may also run in place. Dropout: rng_bits(rng_key(seed), i) >= dropout_threshold(rate)
// (common.h), the CPU's test on the same counter-based hash: the masks agree bit for bit. The
// elementwise kernels' per-element work is in activation.cuh, which cnnkit._cuda_host also runs.
#include <cmath>

#include "cuda/activation.cuh"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

// The elementwise kernels' per-element work is in activation.cuh (shared with cnnkit._cuda_host).
template <class T>
__global__ void unary_kernel(Unary op, const T* x, T* y, index_t n) {
    CNNKIT_GRID_LOOP(i, n) y[i] = unary(op, x[i]);
}

template <class T>
__global__ void binary_kernel(Binary op, const T* dy, const T* v, T* dx, index_t n) {
    CNNKIT_GRID_LOOP(i, n) dx[i] = binary(op, dy[i], v[i]);
}

template <class T>
__global__ void alpha_forward_kernel(Alpha op, const T* x, T* y, index_t n, T alpha) {
    CNNKIT_GRID_LOOP(i, n) y[i] = alpha_forward_value(op, x[i], alpha);
}

template <class T>
__global__ void alpha_backward_kernel(Alpha op, const T* dy, const T* x, T* dx, index_t n, T alpha) {
    CNNKIT_GRID_LOOP(i, n) dx[i] = alpha_backward_value(op, dy[i], x[i], alpha);
}

template <class T>
__global__ void dropout_kernel(const T* x, T* y, index_t n, std::uint64_t key, std::uint64_t threshold, T scale) {
    CNNKIT_GRID_LOOP(i, n) dropout_element(x, y, key, threshold, scale, i);
}

// The maximum of a row (ordinary comparisons, as the CPU's row_max: NaN never replaces a number,
// and the exps then turn NaN rows into NaN anyway).
template <class T>
__device__ T row_max(const T* x, index_t cols, double* shm) {
    T m = x[0];
    for (index_t j = threadIdx.x; j < cols; j += blockDim.x) m = x[j] > m ? x[j] : m;
    // block max with the same comparison
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        const T o = __shfl_down_sync(0xffffffffu, m, off);
        m = o > m ? o : m;
    }
    __syncthreads();
    if (lane == 0) shm[warp] = static_cast<double>(m);
    __syncthreads();
    if (threadIdx.x == 0) {
        double b = shm[0];
        for (int w = 1; w < nwarps; ++w) b = shm[w] > b ? shm[w] : b;
        shm[0] = b;
    }
    __syncthreads();
    const T r = static_cast<T>(shm[0]);
    __syncthreads();
    return r;
}

template <class T>
__global__ void rows_forward_kernel(Rows op, const T* x, T* y, index_t rows, index_t cols) {
    __shared__ double shm[32];
    for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        const T m = row_max(xr, cols, shm);
        double s = 0.0;
        for (index_t j = threadIdx.x; j < cols; j += blockDim.x) s += static_cast<double>(exp_(xr[j] - m));
        s = block_sum(s, shm);
        if (op == Rows::softmax) {
            const T inv = static_cast<T>(1.0 / s);
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = exp_(xr[j] - m) * inv;
        } else {
            const T lse = static_cast<T>(log(s));
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = (xr[j] - m) - lse;
        }
        __syncthreads();  // the row is written before the next iteration's reads of shm
    }
}

template <class T>
__global__ void rows_backward_kernel(RowsBack op, const T* dy, const T* v, T* dx, index_t rows, index_t cols) {
    __shared__ double shm[32];
    for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* dr = dy + r * cols;
        const T* vr = v + r * cols;
        T* out = dx + r * cols;
        // As on the CPU, each row works in double and rounds once: dy - sum(dy y) cancels for a
        // peaked row, and float rounding of the sum (or of exp) would be amplified there.
        if (op == RowsBack::softmax_from_output) {  // dx = y (dy - sum(dy y))
            double dot = 0.0;
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x)
                dot += static_cast<double>(dr[j]) * static_cast<double>(vr[j]);
            const double d = block_sum(dot, shm);
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x)
                out[j] = static_cast<T>(static_cast<double>(vr[j]) * (static_cast<double>(dr[j]) - d));
        } else if (op == RowsBack::log_softmax_from_output) {  // dx = dy - exp(y) sum(dy)
            double tot = 0.0;
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x) tot += static_cast<double>(dr[j]);
            const double s = block_sum(tot, shm);
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x)
                out[j] = static_cast<T>(static_cast<double>(dr[j]) - exp(static_cast<double>(vr[j])) * s);
        } else {
            const double m = static_cast<double>(row_max(vr, cols, shm));
            double sum = 0.0, other = 0.0;  // sum(e); softmax: sum(dy e), log_softmax: sum(dy)
            for (index_t j = threadIdx.x; j < cols; j += blockDim.x) {
                const double e = exp(static_cast<double>(vr[j]) - m);
                sum += e;
                other += op == RowsBack::softmax ? static_cast<double>(dr[j]) * e : static_cast<double>(dr[j]);
            }
            sum = block_sum(sum, shm);
            other = block_sum(other, shm);
            if (op == RowsBack::softmax) {
                const double inv = 1.0 / sum, d = other / sum;
                for (index_t j = threadIdx.x; j < cols; j += blockDim.x)
                    out[j] = static_cast<T>(exp(static_cast<double>(vr[j]) - m) * inv * (static_cast<double>(dr[j]) - d));
            } else {
                const double lse = log(sum);
                for (index_t j = threadIdx.x; j < cols; j += blockDim.x)
                    out[j] = static_cast<T>(static_cast<double>(dr[j]) - exp((static_cast<double>(vr[j]) - m) - lse) * other);
            }
        }
        __syncthreads();
    }
}

// Threads per row: a multiple of 32, up to 256, about the row length.
inline int row_threads(index_t cols) {
    index_t t = (cols + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 256) t = 256;
    return static_cast<int>(t);
}

inline unsigned row_blocks(index_t rows) {
    return static_cast<unsigned>(rows < kMaxBlocks ? rows : kMaxBlocks);
}

}  // namespace

template <class T>
void unary_forward(Unary op, const T* x, T* y, index_t n, Stream stream) {
    if (n == 0) return;
    CNNKIT_LAUNCH(op == Unary::relu ? "relu_forward_kernel" : op == Unary::sigmoid ? "sigmoid_forward_kernel"
                                                                                     : "tanh_forward_kernel",
                  unary_kernel<T>, grid_for(n), kThreads, 0, as_stream(stream), op, x, y, n);
}

template <class T>
void binary_backward(Binary op, const T* dy, const T* v, T* dx, index_t n, Stream stream) {
    if (n == 0) return;
    static const char* names[] = {"relu_backward_kernel", "sigmoid_backward_kernel",
                                  "sigmoid_backward_from_output_kernel", "tanh_backward_kernel",
                                  "tanh_backward_from_output_kernel"};
    CNNKIT_LAUNCH(names[static_cast<int>(op)], binary_kernel<T>, grid_for(n), kThreads, 0, as_stream(stream), op,
                  dy, v, dx, n);
}

template <class T>
void alpha_forward(Alpha op, const T* x, T* y, index_t n, T alpha, Stream stream) {
    if (n == 0) return;
    CNNKIT_LAUNCH(op == Alpha::leaky_relu ? "leaky_relu_forward_kernel" : "elu_forward_kernel",
                  alpha_forward_kernel<T>, grid_for(n), kThreads, 0, as_stream(stream), op, x, y, n, alpha);
}

template <class T>
void alpha_backward(Alpha op, const T* dy, const T* x, T* dx, index_t n, T alpha, Stream stream) {
    if (n == 0) return;
    CNNKIT_LAUNCH(op == Alpha::leaky_relu ? "leaky_relu_backward_kernel" : "elu_backward_kernel",
                  alpha_backward_kernel<T>, grid_for(n), kThreads, 0, as_stream(stream), op, dy, x, dx, n, alpha);
}

template <class T>
void rows_forward(Rows op, const T* x, T* y, index_t rows, index_t cols, Stream stream) {
    if (rows == 0 || cols == 0) return;
    CNNKIT_LAUNCH(op == Rows::softmax ? "softmax_forward_kernel" : "log_softmax_forward_kernel",
                  rows_forward_kernel<T>, row_blocks(rows), row_threads(cols), 0, as_stream(stream), op, x, y, rows,
                  cols);
}

template <class T>
void rows_backward(RowsBack op, const T* dy, const T* v, T* dx, index_t rows, index_t cols, Stream stream) {
    if (rows == 0 || cols == 0) return;
    static const char* names[] = {"softmax_backward_kernel", "softmax_backward_from_output_kernel",
                                  "log_softmax_backward_kernel", "log_softmax_backward_from_output_kernel"};
    CNNKIT_LAUNCH(names[static_cast<int>(op)], rows_backward_kernel<T>, row_blocks(rows), row_threads(cols), 0,
                  as_stream(stream), op, dy, v, dx, rows, cols);
}

template <class T>
void dropout_forward(const T* x, T* y, index_t n, double rate, std::uint64_t seed, Stream stream) {
    require(rate >= 0 && rate < 1, "rate must be in [0, 1), got " + std::to_string(rate));
    if (n == 0) return;
    const T scale = static_cast<T>(1.0 / (1.0 - rate));
    CNNKIT_LAUNCH("dropout_kernel", dropout_kernel<T>, grid_for(n), kThreads, 0, as_stream(stream), x, y, n,
                  rng_key(seed), dropout_threshold(rate), scale);
}

CNNKIT_INSTANTIATE_ACTIVATION(float)
CNNKIT_INSTANTIATE_ACTIVATION(double)

}  // namespace cuda
}  // namespace cnnkit
