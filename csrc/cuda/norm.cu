// norm.cu: the CUDA twin of csrc/cpu/norm.cpp: batch normalization (Keras semantics) over a
// channels-last tensor seen as (M, C), statistics per channel over the M rows.
// Reductions are a proper parallel reduction, deterministic: the rows are cut into fixed chunks
// (set by M only); block (32 channels, 8 row lanes) per (channel tile, chunk) computes the chunk's
// per-channel partials in double, the lanes combined in lane order; a finishing kernel (one thread
// per channel) combines the chunk partials in chunk order. Moments use two passes over each chunk
// (mean, then squared deviations from it; the second pass mostly hits L2) and the chunks are merged
// with the pairwise update of Chan, Golub and LeVeque, as the CPU does with its blocks. Scratch
// (stream-ordered): the partials, and per-channel T coefficients for the elementwise passes, whose
// per-element work is in norm.cuh (run on the CPU by the host test module cnnkit._cuda_host too).
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/norm.cuh"

namespace cnnkit {
namespace cuda {

namespace {

// Adds the kChunkLanes lanes of sh[.][tx] in lane order (every thread gets the sum).
__device__ __forceinline__ double lane_sum(double v, double (*sh)[32]) {
    __syncthreads();
    sh[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    double t = 0.0;
    for (int l = 0; l < kChunkLanes; ++l) t += sh[l][threadIdx.x];
    return t;
}

// part[(chunk * 2 + 0) * C + c] = chunk mean, [(chunk * 2 + 1) * C + c] = chunk sum of squared
// deviations from it.
template <class T>
__global__ void moments_partials_kernel(const T* __restrict__ x, double* __restrict__ part, index_t M, index_t C,
                                        index_t chunk_rows) {
    __shared__ double sh[kChunkLanes][32];
    const ChunkThread t(M, C, chunk_rows);
    double s = 0.0;
    if (t.ok)
        for (index_t r = t.r0 + threadIdx.y; r < t.r1; r += kChunkLanes) s += static_cast<double>(x[r * C + t.c]);
    const double mean = lane_sum(s, sh) / static_cast<double>(t.r1 - t.r0);
    double q = 0.0;
    if (t.ok)
        for (index_t r = t.r0 + threadIdx.y; r < t.r1; r += kChunkLanes) {
            const double d = static_cast<double>(x[r * C + t.c]) - mean;
            q += d * d;
        }
    t.store_pair(part, C, mean, lane_sum(q, sh));
}

// Merges the chunks in order: mean, biased variance -> invstd; training also updates the moving
// statistics (M > 0) and writes the normalize coefficients coef = [mean_t, scale, shift] (3C of T).
template <class T>
__global__ void moments_finish_kernel(const double* __restrict__ part, index_t M, index_t C, index_t chunk_rows,
                                      index_t nchunks, double epsilon, double momentum, const T* __restrict__ gamma,
                                      const T* __restrict__ beta, double* __restrict__ mean_out,
                                      double* __restrict__ invstd_out, T* __restrict__ moving_mean,
                                      T* __restrict__ moving_var, T* __restrict__ coef) {
    CNNKIT_GRID_LOOP(c, C) {
        double mean = 0.0, var = 0.0, n = 0.0;
        for (index_t k = 0; k < nchunks; ++k) {
            const index_t r0 = k * chunk_rows, r1 = r0 + chunk_rows < M ? r0 + chunk_rows : M;
            const double nb = static_cast<double>(r1 - r0);
            const double w = nb / (n + nb), cross = n * nb / (n + nb);
            const double delta = part[(k * 2) * C + c] - mean;
            mean += delta * w;
            var += part[(k * 2 + 1) * C + c] + delta * delta * cross;
            n += nb;
        }
        if (M > 0) var /= static_cast<double>(M);
        const double is = 1.0 / sqrt(var + epsilon);
        mean_out[c] = mean;
        invstd_out[c] = is;
        if (moving_mean && M > 0) {
            moving_mean[c] = static_cast<T>(static_cast<double>(moving_mean[c]) * momentum + mean * (1.0 - momentum));
            moving_var[c] = static_cast<T>(static_cast<double>(moving_var[c]) * momentum + var * (1.0 - momentum));
        }
        if (coef) {
            coef[c] = static_cast<T>(mean);
            coef[C + c] = static_cast<T>(is * (gamma ? static_cast<double>(gamma[c]) : 1.0));
            coef[2 * C + c] = beta ? beta[c] : T(0);
        }
    }
}

// Inference coefficients from the moving statistics: coef = [mean_t, scale, shift, a] and, in double,
// dstat = [mean, invstd] (for the backward's sums).
template <class T>
__global__ void moving_coef_kernel(const T* __restrict__ gamma, const T* __restrict__ beta,
                                   const T* __restrict__ moving_mean, const T* __restrict__ moving_var, index_t C,
                                   double epsilon, T* __restrict__ coef, double* __restrict__ dstat) {
    CNNKIT_GRID_LOOP(c, C) {
        const double m = static_cast<double>(moving_mean[c]);
        const double is = 1.0 / sqrt(static_cast<double>(moving_var[c]) + epsilon);
        const double gm = gamma ? static_cast<double>(gamma[c]) : 1.0;
        coef[c] = static_cast<T>(m);
        coef[C + c] = static_cast<T>(is * gm);
        coef[2 * C + c] = beta ? beta[c] : T(0);
        coef[3 * C + c] = static_cast<T>(gm * is);
        if (dstat) dstat[c] = m, dstat[C + c] = is;
    }
}

// The elementwise passes' per-element work is in norm.cuh (shared with cnnkit._cuda_host).
template <class T, class I>
__global__ void normalize_kernel(const T* __restrict__ x, const T* __restrict__ coef, T* __restrict__ y, I C,
                                 I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) normalize_element(x, coef, y, C, e);
}

// part[(chunk * 2) * C + c] = sum dy, [(chunk * 2 + 1) * C + c] = sum dy * (x - mean) over the chunk.
template <class T>
__global__ void grad_partials_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                     const double* __restrict__ mean, double* __restrict__ part, index_t M,
                                     index_t C, index_t chunk_rows) {
    __shared__ double sh[kChunkLanes][32];
    const ChunkThread t(M, C, chunk_rows);
    double p = 0.0, q = 0.0;
    if (t.ok) {
        const double m = mean[t.c];
        for (index_t r = t.r0 + threadIdx.y; r < t.r1; r += kChunkLanes) {
            const double d = static_cast<double>(dy[r * C + t.c]);
            p += d;
            q += d * (static_cast<double>(x[r * C + t.c]) - m);
        }
    }
    p = lane_sum(p, sh);
    q = lane_sum(q, sh);
    t.store_pair(part, C, p, q);
}

// dbeta = sum dy, dgamma = sum dy * (x - mean) * invstd; training also the dx coefficients
// coef = [mean_t, a, mdy, k] with a = gamma * invstd, mdy = mean(dy), k = invstd^2 mean(dy (x - mean)).
template <class T>
__global__ void grad_finish_kernel(const double* __restrict__ part, index_t M, index_t C, index_t nchunks,
                                   const T* __restrict__ gamma, const double* __restrict__ mean,
                                   const double* __restrict__ invstd, T* __restrict__ dgamma, T* __restrict__ dbeta,
                                   T* __restrict__ coef) {
    CNNKIT_GRID_LOOP(c, C) {
        double sdy = 0.0, sdyx = 0.0;
        for (index_t k = 0; k < nchunks; ++k) {
            sdy += part[(k * 2) * C + c];
            sdyx += part[(k * 2 + 1) * C + c];
        }
        const double is = invstd[c];
        dbeta[c] = static_cast<T>(sdy);
        dgamma[c] = static_cast<T>(sdyx * is);
        if (coef) {
            const double Md = static_cast<double>(M > 1 ? M : 1);
            coef[c] = static_cast<T>(mean[c]);
            coef[C + c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * is);
            coef[2 * C + c] = static_cast<T>(sdy / Md);
            coef[3 * C + c] = static_cast<T>(is * is * sdyx / Md);
        }
    }
}

template <class T, class I>
__global__ void train_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ coef,
                                T* __restrict__ dx, I C, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) train_dx_element(dy, x, coef, dx, C, e);
}

template <class T, class I>
__global__ void scale_dx_kernel(const T* __restrict__ dy, const T* __restrict__ coef, T* __restrict__ dx, I C,
                                I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) scale_dx_element(dy, coef, dx, C, e);
}

// Launches kernel(args..., I(C), I(M * C)), one thread per element of the (M, C) tensor, with
// I = int32_t when the tensor and the coefficients fit (norm.cuh), else int64; pick(I{}) names the
// kernel for that I.
template <class Pick, class... Args>
void launch_elementwise(const char* name, index_t M, index_t C, cudaStream_t s, Pick pick, Args... args) {
    const index_t count = checked_mul(M, C, "batch_norm size");
    if (count == 0) return;
    with_index_type(norm_elementwise_index32(M, C), [&](auto tag) {
        using I = decltype(tag);
        const auto kernel = pick(tag);
        CNNKIT_LAUNCH(name, kernel, grid_for(count), kThreads, 0, s, args..., I(C), I(count));
    });
}

// Batch moments -> mean/invstd (and, for training, the moving statistics and coef).
template <class T>
void moments(const T* x, index_t M, index_t C, double epsilon, double momentum, const T* gamma, const T* beta,
             double* mean, double* invstd, T* moving_mean, T* moving_var, T* coef, cudaStream_t s,
             const char* name) {
    const Chunks ch(M, C);
    Scratch part(sizeof(double) * checked_mul(2 * ch.count, C, name), s, name);
    if (M > 0)
        CNNKIT_LAUNCH("batch_norm_moments_partials_kernel", moments_partials_kernel<T>, ch.grid, dim3(32, kChunkLanes), 0,
                      s, x, part.as<double>(), M, C, ch.rows);
    CNNKIT_LAUNCH("batch_norm_moments_finish_kernel", moments_finish_kernel<T>, grid_for(C), kThreads, 0, s,
                  part.as<double>(), M, C, ch.rows, M > 0 ? ch.count : 0, epsilon, momentum, gamma, beta, mean,
                  invstd, moving_mean, moving_var, coef);
}

template <class T>
void grad_sums(const T* dy, const T* x, const T* gamma, const double* mean, const double* invstd, index_t M,
               index_t C, T* dgamma, T* dbeta, T* coef, cudaStream_t s, const char* name) {
    const Chunks ch(M, C);
    Scratch part(sizeof(double) * checked_mul(2 * ch.count, C, name), s, name);
    if (M > 0)
        CNNKIT_LAUNCH("batch_norm_grad_partials_kernel", grad_partials_kernel<T>, ch.grid, dim3(32, kChunkLanes), 0, s,
                      dy, x, mean, part.as<double>(), M, C, ch.rows);
    CNNKIT_LAUNCH("batch_norm_grad_finish_kernel", grad_finish_kernel<T>, grid_for(C), kThreads, 0, s,
                  part.as<double>(), M, C, M > 0 ? ch.count : 0, gamma, mean, invstd, dgamma, dbeta, coef);
}

}  // namespace

template <class T>
void batch_norm_batch_stats(const T* x, index_t M, index_t C, double epsilon, double* mean, double* invstd,
                            Stream stream) {
    moments<T>(x, M, C, epsilon, 1.0, nullptr, nullptr, mean, invstd, nullptr, nullptr, nullptr, as_stream(stream),
               "batch_norm_batch_stats");
}

template <class T>
void batch_norm_train_forward(const T* x, const T* gamma, const T* beta, index_t M, index_t C, double momentum,
                              double epsilon, T* y, double* mean, double* invstd, T* moving_mean, T* moving_var,
                              Stream stream) {
    const cudaStream_t s = as_stream(stream);
    Scratch coef(sizeof(T) * 3 * C, s, "batch_norm_train_forward");
    moments<T>(x, M, C, epsilon, momentum, gamma, beta, mean, invstd, moving_mean, moving_var, coef.as<T>(), s,
               "batch_norm_train_forward");
    launch_elementwise("batch_norm_normalize_kernel", M, C, s,
                       [](auto i) { return normalize_kernel<T, decltype(i)>; }, x, coef.as<T>(), y);
}

template <class T>
void batch_norm_inference_forward(const T* x, const T* gamma, const T* beta, const T* moving_mean,
                                  const T* moving_var, index_t M, index_t C, double epsilon, T* y, Stream stream) {
    const cudaStream_t s = as_stream(stream);
    Scratch coef(sizeof(T) * 4 * C, s, "batch_norm_inference_forward");
    CNNKIT_LAUNCH("batch_norm_moving_coef_kernel", moving_coef_kernel<T>, grid_for(C), kThreads, 0, s, gamma, beta,
                  moving_mean, moving_var, C, epsilon, coef.as<T>(), static_cast<double*>(nullptr));
    launch_elementwise("batch_norm_normalize_kernel", M, C, s,
                       [](auto i) { return normalize_kernel<T, decltype(i)>; }, x, coef.as<T>(), y);
}

template <class T>
void batch_norm_train_backward(const T* dy, const T* x, const T* gamma, const double* mean, const double* invstd,
                               index_t M, index_t C, T* dx, T* dgamma, T* dbeta, Stream stream) {
    const cudaStream_t s = as_stream(stream);
    Scratch coef(sizeof(T) * 4 * C, s, "batch_norm_train_backward");
    grad_sums<T>(dy, x, gamma, mean, invstd, M, C, dgamma, dbeta, coef.as<T>(), s, "batch_norm_train_backward");
    launch_elementwise("batch_norm_train_dx_kernel", M, C, s,
                       [](auto i) { return train_dx_kernel<T, decltype(i)>; }, dy, x, coef.as<T>(), dx);
}

template <class T>
void batch_norm_inference_backward(const T* dy, const T* x, const T* gamma, const T* moving_mean,
                                   const T* moving_var, index_t M, index_t C, double epsilon, T* dx, T* dgamma,
                                   T* dbeta, Stream stream) {
    const cudaStream_t s = as_stream(stream);
    Scratch coef(sizeof(T) * 4 * C, s, "batch_norm_inference_backward");
    Scratch dstat(sizeof(double) * 2 * C, s, "batch_norm_inference_backward");
    CNNKIT_LAUNCH("batch_norm_moving_coef_kernel", moving_coef_kernel<T>, grid_for(C), kThreads, 0, s, gamma,
                  static_cast<const T*>(nullptr), moving_mean, moving_var, C, epsilon, coef.as<T>(),
                  dstat.as<double>());
    grad_sums<T>(dy, x, gamma, dstat.as<double>(), dstat.as<double>() + C, M, C, dgamma, dbeta,
                 static_cast<T*>(nullptr), s, "batch_norm_inference_backward");
    launch_elementwise("batch_norm_scale_dx_kernel", M, C, s,
                       [](auto i) { return scale_dx_kernel<T, decltype(i)>; }, dy, coef.as<T>(), dx);
}

CNNKIT_INSTANTIATE_NORM(float)
CNNKIT_INSTANTIATE_NORM(double)

}  // namespace cuda
}  // namespace cnnkit
