// loss.cu: the CUDA twin of csrc/cpu/loss.cpp: fused softmax cross-entropy over logits (N, K) with
// int64 class ids (N,) or target probabilities (N, K). One block per row (grid-stride over rows):
// the row max (and whether every logit is finite), sum exp(logit - max) in double by a
// deterministic block reduction, log-sum-exp = max + log(sum); the gradient row is written in the
// same kernel. Per-row losses go to the float64 scratch row_loss (N,), and one block averages them
// (fixed strided partials, then the block tree): deterministic, independent of the launch.
// A NaN or infinite logit makes its row's loss and gradient NaN, as on the CPU. An out-of-range
// label is a ValueError before the row kernel runs (check_labels, as the CPU twin: a small kernel, 8
// bytes of stream-ordered scratch and one synchronization); the row kernel still never indexes with
// one (that row would become NaN).
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }

template <class T>
__global__ void xent_rows_kernel(const T* __restrict__ logits, const std::int64_t* __restrict__ labels,
                                 const T* __restrict__ probs, index_t N, index_t K, double grad_scale,
                                 double* __restrict__ row_loss, T* __restrict__ dlogits) {
    __shared__ double shm[32];
    const double nan = __longlong_as_double(0x7ff8000000000000LL);
    for (index_t i = blockIdx.x; i < N; i += gridDim.x) {
        const T* x = logits + i * K;
        const T* p = probs ? probs + i * K : nullptr;
        T* g = dlogits ? dlogits + i * K : nullptr;
        std::int64_t label = -1;
        bool bad_label = false;
        if (labels) {
            label = labels[i];
            bad_label = label < 0 || label >= K;
        }
        // max and finiteness (x * 0 is 0 for finite x, NaN otherwise)
        T m = x[0];
        double probe = 0.0;
        for (index_t k = threadIdx.x; k < K; k += blockDim.x) {
            m = x[k] > m ? x[k] : m;
            probe += static_cast<double>(x[k] * T(0));
        }
        m = static_cast<T>(block_max(static_cast<double>(m), shm));
        const bool finite = block_sum(probe, shm) == 0.0;
        double s = 0.0, pdist = 0.0, psum = 0.0;
        if (finite && !bad_label) {
            for (index_t k = threadIdx.x; k < K; k += blockDim.x) {
                s += static_cast<double>(exp_(x[k] - m));
                if (p) {
                    pdist += static_cast<double>(p[k]) * (static_cast<double>(m) - static_cast<double>(x[k]));
                    psum += static_cast<double>(p[k]);
                }
            }
        }
        s = block_sum(s, shm);
        if (p) {
            pdist = block_sum(pdist, shm);
            psum = block_sum(psum, shm);
        }
        const bool ok = finite && !bad_label;
        const double log_s = log(s);
        if (row_loss && threadIdx.x == 0) {
            double loss;
            if (!ok)
                loss = nan;
            else if (p)
                loss = pdist + psum * log_s;
            else
                loss = (static_cast<double>(m) - static_cast<double>(x[label])) + log_s;
            row_loss[i] = loss;
        }
        if (g) {
            if (!ok) {
                for (index_t k = threadIdx.x; k < K; k += blockDim.x) g[k] = static_cast<T>(nan);
            } else if (p) {
                const T a = static_cast<T>(grad_scale * psum / s), b = static_cast<T>(grad_scale);
                for (index_t k = threadIdx.x; k < K; k += blockDim.x) g[k] = a * exp_(x[k] - m) - b * p[k];
            } else {
                const T a = static_cast<T>(grad_scale / s);
                for (index_t k = threadIdx.x; k < K; k += blockDim.x) {
                    const T e = exp_(x[k] - m);
                    // softmax_label - 1 in double from the sum (as the CPU twin): a confident row
                    // would cancel it in T
                    g[k] = k == label ? static_cast<T>(grad_scale * ((static_cast<double>(e) - s) / s)) : a * e;
                }
            }
        }
        __syncthreads();
    }
}

// *loss = mean(row_loss) (NaN for N = 0). One block of kThreads threads.
template <class T>
__global__ void mean_kernel(const double* __restrict__ row_loss, index_t N, T* __restrict__ loss) {
    __shared__ double shm[32];
    double s = 0.0;
    for (index_t i = threadIdx.x; i < N; i += blockDim.x) s += row_loss[i];
    s = block_sum(s, shm);
    if (threadIdx.x == 0)
        *loss = static_cast<T>(N > 0 ? s / static_cast<double>(N) : __longlong_as_double(0x7ff8000000000000LL));
}

// first[0] = the smallest i with labels[i] outside [0, K) (left at its initial sentinel if none).
__global__ void first_bad_label_kernel(const std::int64_t* __restrict__ labels, index_t N, index_t K,
                                       long long* __restrict__ first) {
    CNNKIT_GRID_LOOP(i, N) {
        const std::int64_t v = labels[i];
        if (v < 0 || v >= K) atomicMin(first, static_cast<long long>(i));
    }
}

// As the CPU twin, refuse an out-of-range label with a ValueError naming the first one. This reads
// 8 bytes back (a stream synchronization), so it runs only when the caller asks (check_labels): the
// training loop validated its labels once per fit and passes false.
void check_labels(const std::int64_t* labels, index_t N, index_t K, cudaStream_t s) {
    Scratch first(sizeof(long long), s, "softmax_cross_entropy label check");
    check_cuda(cudaMemsetAsync(first.as<long long>(), 0x7f, sizeof(long long), s), "label check");
    CNNKIT_LAUNCH("softmax_cross_entropy_label_check_kernel", first_bad_label_kernel, grid_for(N), kThreads, 0,
                  s, labels, N, K, first.as<long long>());
    long long host_first = 0;
    std::int64_t value = 0;
    check_cuda(cudaMemcpyAsync(&host_first, first.as<long long>(), sizeof host_first, cudaMemcpyDeviceToHost, s),
               "label check");
    check_cuda(cudaStreamSynchronize(s), "label check");
    if (host_first >= N) return;
    check_cuda(cudaMemcpyAsync(&value, labels + host_first, sizeof value, cudaMemcpyDeviceToHost, s), "label check");
    check_cuda(cudaStreamSynchronize(s), "label check");
    require(false, "labels[" + std::to_string(host_first) + "] = " + std::to_string(value) +
                       " is out of range [0, " + std::to_string(K) + ")");
}

inline int row_threads(index_t K) {
    index_t t = (K + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 256) t = 256;
    return static_cast<int>(t);
}

template <class T>
void xent(const T* logits, const std::int64_t* labels, const T* probs, index_t N, index_t K, double grad_scale,
          double* row_loss, T* loss, T* dlogits, bool checked, Stream stream) {
    const cudaStream_t s = as_stream(stream);
    require((labels != nullptr) != (probs != nullptr), "softmax_cross_entropy: exactly one of labels and probs");
    if (checked && labels && N > 0) check_labels(labels, N, K, s);
    if (N > 0)
        CNNKIT_LAUNCH("softmax_cross_entropy_kernel", xent_rows_kernel<T>,
                      static_cast<unsigned>(N < kMaxBlocks ? N : kMaxBlocks), row_threads(K), 0, s, logits, labels,
                      probs, N, K, grad_scale, row_loss, dlogits);
    if (loss) CNNKIT_LAUNCH("softmax_cross_entropy_mean_kernel", mean_kernel<T>, 1, kThreads, 0, s, row_loss, N, loss);
}

}  // namespace

template <class T>
void softmax_cross_entropy_forward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                   index_t K, double* row_loss, T* loss, bool check_labels, Stream stream) {
    xent<T>(logits, labels, probs, N, K, 0.0, row_loss, loss, nullptr, check_labels, stream);
}

template <class T>
void softmax_cross_entropy_backward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                    index_t K, double dloss, T* dlogits, bool check_labels, Stream stream) {
    const double scale = N > 0 ? dloss / static_cast<double>(N) : 0.0;
    xent<T>(logits, labels, probs, N, K, scale, nullptr, nullptr, dlogits, check_labels, stream);
}

template <class T>
void softmax_cross_entropy_fused(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                 index_t K, double* row_loss, T* loss, T* dlogits, bool check_labels,
                                 Stream stream) {
    const double scale = N > 0 ? 1.0 / static_cast<double>(N) : 0.0;
    xent<T>(logits, labels, probs, N, K, scale, row_loss, loss, dlogits, check_labels, stream);
}

CNNKIT_INSTANTIATE_LOSS(float)
CNNKIT_INSTANTIATE_LOSS(double)

}  // namespace cuda
}  // namespace cnnkit
