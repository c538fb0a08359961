// bias.cu: the CUDA twin of csrc/cpu/bias.cpp. bias_add: y (rows, O) += b, then max(., 0) if relu,
// elementwise (grid-stride, 32-bit index arithmetic when every index fits). bias_grad: the column
// sums of dy in double, deterministic: fixed chunks of rows (check.cuh's Chunks) give per-chunk
// partials in stream-ordered scratch, which are then added in chunk order. The per-thread work is in
// bias.cuh, which the host test module cnnkit._cuda_host also runs.
#include "cuda/bias.cuh"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

// The per-element work is in bias.cuh (shared with cnnkit._cuda_host).
template <class T, class I>
__global__ void bias_add_kernel(T* __restrict__ y, const T* __restrict__ b, I count, I O, bool relu) {
    CNNKIT_GRID_LOOP_AS(I, e, count) bias_add_element(y, b, O, relu, e);
}

// Per-chunk column sums of a (rows, O) matrix: block (32, kChunkLanes) covers 32 columns of one
// chunk; thread (tx, ty) sums rows ty, ty + kChunkLanes, ... of the chunk in double, then the lane
// sums are added in lane order. part[chunk * O + o]. grid (ceil(O / 32), chunks).
template <class T>
__global__ void column_partials_kernel(const T* __restrict__ a, double* __restrict__ part, index_t rows,
                                       index_t O, index_t chunk_rows) {
    __shared__ double sh[kChunkLanes][32];
    const index_t o = static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x;
    sh[threadIdx.y][threadIdx.x] = column_lane_sum(a, rows, O, chunk_rows, blockIdx.y, o, threadIdx.y, kChunkLanes);
    __syncthreads();
    if (threadIdx.y == 0 && o < O) {
        double t = 0.0;
        for (int l = 0; l < kChunkLanes; ++l) t += sh[l][threadIdx.x];
        part[static_cast<index_t>(blockIdx.y) * O + o] = t;
    }
}

template <class T>
__global__ void column_finish_kernel(const double* __restrict__ part, T* __restrict__ out, index_t nchunks,
                                     index_t O) {
    CNNKIT_GRID_LOOP(o, O) column_finish_element(part, out, nchunks, O, o);
}

}  // namespace

template <class T>
void bias_add(T* y, const T* b, index_t rows, index_t O, bool relu, Stream stream) {
    const index_t count = checked_mul(rows, O, "bias_add size");
    if (count == 0) return;
    with_index_type(bias_add_index32(rows, O), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("bias_add_kernel", (bias_add_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), y,
                      b, I(count), I(O), relu);
    });
}

template <class T>
void bias_grad(const T* dy, T* db, index_t rows, index_t O, Stream stream) {
    const cudaStream_t s = as_stream(stream);
    if (O == 0) return;
    if (rows == 0) {
        check_cuda(cudaMemsetAsync(db, 0, sizeof(T) * O, s), "bias_grad");
        return;
    }
    require((O + 31) / 32 <= 2147483647, "bias_grad: too many columns");
    const Chunks ch(rows, O);
    Scratch part(sizeof(double) * checked_mul(ch.count, O, "bias_grad"), s, "bias_grad");
    CNNKIT_LAUNCH("column_partials_kernel", column_partials_kernel<T>, ch.grid, dim3(32, kChunkLanes), 0, s, dy,
                  part.as<double>(), rows, O, ch.rows);
    CNNKIT_LAUNCH("column_finish_kernel", column_finish_kernel<T>, grid_for(O), kThreads, 0, s, part.as<double>(),
                  db, ch.count, O);
}

CNNKIT_INSTANTIATE_BIAS(float)
CNNKIT_INSTANTIATE_BIAS(double)

}  // namespace cuda
}  // namespace cnnkit
