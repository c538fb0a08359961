// conv_direct.cu: the CUDA twin of csrc/cpu/conv_direct.cpp, direct 2-D convolution for small
// filters (a first layer on 1-3 channels), where im2col + cuBLAS spends its time writing and
// rereading an im2col matrix that is K = KH*KW*C columns wide for a GEMM too thin to use the GPU.
// NHWC input, HWIO kernel seen as (K, O), any stride, dilation and padding (a padded tap adds 0 * w).
// Forward: one thread per output element (n, oh, ow, o); a warp covers consecutive output channels
// of one pixel, so the x reads are broadcasts and the w reads coalesce; bias first, the K taps
// accumulated in (kh, kw, c) order in T (as the CPU twin), ReLU applied before the one store.
// Weight gradient dw[k, o] = sum over pixels of x_tap(k) * dy[o] (and db[o] = sum dy[o], as tap K):
// block (32 channels, 8 pixel lanes) per (channel tile, tap, pixel chunk); each thread sums its
// strided pixels in T, the 8 lanes are added in lane order in double, and the chunk partials
// (stream-ordered scratch) are added in chunk order in double: deterministic, no atomics.
// cnnkit.ops.convolution picks this path on the GPU only for small K (see _GPU_DIRECT_MAX_K there). The
// per-thread work is in conv_direct.cuh, which the host test module cnnkit._cuda_host also runs.
#include "cuda/check.cuh"
#include "cuda/conv_direct.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

// The per-thread work is in conv_direct.cuh (shared with the host test module cnnkit._cuda_host).
template <class T, class I>
__global__ void direct_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                      T* __restrict__ y, const Geom<I> g, I O, bool relu, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) direct_forward_element(x, w, b, y, g, O, relu, e);
}

// part[(chunk * (K + 1) + k) * O + o]; tap k == K is the bias gradient (x_tap = 1).
template <class T, class I>
__global__ void direct_weights_partials_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                               double* __restrict__ part, const Geom<I> g, I O, I chunk_pixels) {
    __shared__ double sh[kDirectLanes][32];
    const I K = g.KH * g.KW * g.C;
    const I o = static_cast<I>(blockIdx.x) * 32 + static_cast<I>(threadIdx.x);
    const I k = blockIdx.y, chunk = blockIdx.z;
    const T acc = direct_weights_lane_sum(x, dy, g, O, chunk_pixels, k, chunk, o, static_cast<I>(threadIdx.y));
    sh[threadIdx.y][threadIdx.x] = static_cast<double>(acc);
    __syncthreads();
    if (threadIdx.y == 0 && o < O) {
        double t = 0.0;
        for (int l = 0; l < kDirectLanes; ++l) t += sh[l][threadIdx.x];
        part[(static_cast<index_t>(chunk) * (K + 1) + k) * O + o] = t;
    }
}

template <class T>
__global__ void direct_weights_finish_kernel(const double* __restrict__ part, T* __restrict__ dw,
                                             T* __restrict__ db, index_t K, index_t O, index_t nchunks) {
    const index_t outputs = (K + (db ? 1 : 0)) * O;
    CNNKIT_GRID_LOOP(e, outputs) direct_weights_finish_element(part, dw, db, K, O, nchunks, e);
}

}  // namespace

template <class T>
void conv2d_direct_forward(const T* x, const T* w, const T* b, T* y, const ConvGeom& g, index_t O, bool relu,
                           Stream stream) {
    const index_t count = direct_forward_count(g, O);
    if (count == 0) return;
    with_index_type(direct_forward_index32(g, O), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("conv2d_direct_forward_kernel", (direct_forward_kernel<T, I>), grid_for(count), kThreads, 0,
                      as_stream(stream), x, w, b, y, Geom<I>(g), I(O), relu, I(count));
    });
}

template <class T>
void conv2d_direct_backward_weights(const T* x, const T* dy, T* dw, T* db, const ConvGeom& g, index_t O,
                                    Stream stream) {
    const cudaStream_t s = as_stream(stream);
    const index_t K = g.patch_size(), P = g.out_pixels();
    if (O == 0) return;
    if (P == 0) {
        check_cuda(cudaMemsetAsync(dw, 0, sizeof(T) * K * O, s), "conv2d_direct_backward_weights");
        if (db) check_cuda(cudaMemsetAsync(db, 0, sizeof(T) * O, s), "conv2d_direct_backward_weights");
        return;
    }
    require(K + 1 <= 65535, "conv2d_direct_backward_weights: the filter has more than 65534 taps; "
                            "use the im2col path");
    const DirectChunks chunks(P);
    Scratch part(sizeof(double) * checked_mul(checked_mul(chunks.count, K + 1, "scratch"), O, "scratch"), s,
                 "conv2d_direct_backward_weights scratch");
    const dim3 grid(static_cast<unsigned>((O + 31) / 32), static_cast<unsigned>(K + (db ? 1 : 0)),
                    static_cast<unsigned>(chunks.count));
    with_index_type(direct_weights_index32(g, O), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("conv2d_direct_weights_partials_kernel", (direct_weights_partials_kernel<T, I>), grid,
                      dim3(32, kDirectLanes), 0, s, x, dy, part.as<double>(), Geom<I>(g), I(O), I(chunks.pixels));
    });
    CNNKIT_LAUNCH("conv2d_direct_weights_finish_kernel", direct_weights_finish_kernel<T>,
                  grid_for((K + 1) * O), kThreads, 0, s, part.as<double>(), dw, db, K, O, chunks.count);
}

CNNKIT_INSTANTIATE_CONV_DIRECT(float)
CNNKIT_INSTANTIATE_CONV_DIRECT(double)

}  // namespace cuda
}  // namespace cnnkit
