// pool.cu: the CUDA twin of csrc/cpu/pool.cpp: max, average, global and stochastic pooling over NHWC
// activations, forward and backward, with the CPU's rules: NaN is the maximum (the first NaN in scan
// order wins), ties go to the first cell in scan order (window rows outer, columns inner), padded
// cells never win and are not counted by the average, the index is the flat in-image h*W + w; a
// window with no input cell gives -inf and index -1 (max), 0 (average, stochastic).
// Forwards: one thread per output element (n, oh, ow, c), consecutive threads on consecutive
// channels (coalesced). Backwards are GATHERS, one thread per input element, summing the windows
// that cover it in (oh, ow) order, the first assigning: no atomics, deterministic, and the same
// operations in the same order as the CPU. Global average and max: one block per (image, 32
// channels) along x of the grid (any batch size), 32 pixel lanes, combined in lane order (the sum in
// double; the max by the same rule). Stochastic pooling draws uniform01(seed, flat output index)
// exactly as the CPU does, with the same double sums in the same order, so it picks the same cells.
// Index arithmetic is 32-bit when the geometry and every index fit (I = int32_t, see fits32 in
// index.cuh), else 64-bit; argmax/index arrays are A = int32_t or int64_t. The per-element work is
// in pool.cuh, which the host test module cnnkit._cuda_host also runs.
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/pool.cuh"

namespace cnnkit {
namespace cuda {

namespace {

// The per-element work is in pool.cuh (shared with the host test module cnnkit._cuda_host).
template <class T, class A, class I>
__global__ void max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ argmax,
                                   const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) max_forward_element(x, y, argmax, g, e);
}

template <class T, class A, class I>
__global__ void max_backward_kernel(const T* __restrict__ dy, const A* __restrict__ argmax, T* __restrict__ dx,
                                    const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) max_backward_element(dy, argmax, dx, g, e);
}

template <class T, class I>
__global__ void avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) avg_forward_element(x, y, g, e);
}

template <class T, class I>
__global__ void avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) avg_backward_element(dy, dx, g, e);
}

// Global pooling (pool.cuh): a block-stride loop over the blocks b = n * tiles + tile.
template <class T>
__global__ void global_avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, index_t N, index_t HW,
                                          index_t C) {
    __shared__ double sh[kGlobalLanes][32];
    for (index_t b = blockIdx.x; b < global_blocks(N, C); b += gridDim.x) {
        const GlobalBlock blk = global_block(b, C);
        const index_t c = blk.c0 + threadIdx.x;
        sh[threadIdx.y][threadIdx.x] = global_avg_lane_sum(x, HW, C, blk.n, c, threadIdx.y);
        __syncthreads();
        if (threadIdx.y == 0 && c < C) {
            double t = 0.0;
            for (int l = 0; l < kGlobalLanes; ++l) t += sh[l][threadIdx.x];
            y[blk.n * C + c] = static_cast<T>(t / static_cast<double>(HW));
        }
        __syncthreads();  // sh is read before the next block's lanes write it
    }
}

template <class T, class I>
__global__ void global_avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, I HW, I C, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) global_avg_backward_element(dy, dx, HW, C, e);
}

template <class T, class A>
__global__ void global_max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ argmax,
                                          index_t N, index_t HW, index_t C) {
    __shared__ T shv[kGlobalLanes][32];
    __shared__ index_t shp[kGlobalLanes][32];
    for (index_t b = blockIdx.x; b < global_blocks(N, C); b += gridDim.x) {
        const GlobalBlock blk = global_block(b, C);
        const index_t c = blk.c0 + threadIdx.x;
        T best;
        index_t arg;
        global_max_lane(x, HW, C, blk.n, c, threadIdx.y, best, arg);
        shv[threadIdx.y][threadIdx.x] = best;
        shp[threadIdx.y][threadIdx.x] = arg;
        __syncthreads();
        if (threadIdx.y == 0 && c < C) {
            for (int l = 1; l < kGlobalLanes; ++l) {
                const index_t p = shp[l][threadIdx.x];
                if (p >= 0 && beats(shv[l][threadIdx.x], p, best, arg)) best = shv[l][threadIdx.x], arg = p;
            }
            y[blk.n * C + c] = best;
            if (argmax) argmax[blk.n * C + c] = static_cast<A>(arg);
        }
        __syncthreads();
    }
}

template <class T, class A, class I>
__global__ void global_max_backward_kernel(const T* __restrict__ dy, const A* __restrict__ argmax,
                                           T* __restrict__ dx, I HW, I C, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) global_max_backward_element(dy, argmax, dx, HW, C, e);
}

template <class T, class A, class I>
__global__ void stochastic_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ index,
                                          bool training, std::uint64_t seed, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) stochastic_forward_element(x, y, index, training, seed, g, e);
}

template <class T, class I>
__global__ void stochastic_backward_inference_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                     T* __restrict__ dx, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) stochastic_backward_inference_element(dy, x, dx, g, e);
}

// Launches kernel(args..., Geom<I>(g), I(count)), one thread per element of the output (a forward)
// or of the input (a gather), with I = int32_t where pool_index32 allows, else int64; pick(I{})
// names the kernel for that I.
template <class Pick, class... Args>
void launch_pool(const char* name, index_t count, const ConvGeom& g, Stream stream, Pick pick, Args... args) {
    if (count == 0) return;
    with_index_type(pool_index32(g), [&](auto tag) {
        using I = decltype(tag);
        const auto kernel = pick(tag);
        CNNKIT_LAUNCH(name, kernel, grid_for(count), kThreads, 0, as_stream(stream), args..., Geom<I>(g), I(count));
    });
}

}  // namespace

template <class T, class A>
void max_pool2d_forward(const T* x, T* y, A* argmax, const ConvGeom& g, Stream stream) {
    launch_pool("max_pool2d_forward_kernel", pooled_size(g), g, stream,
                [](auto i) { return max_forward_kernel<T, A, decltype(i)>; }, x, y, argmax);
}

template <class T, class A>
void max_pool2d_backward(const T* dy, const A* argmax, T* dx, const ConvGeom& g, Stream stream) {
    launch_pool("max_pool2d_backward_kernel", g.in_size(), g, stream,
                [](auto i) { return max_backward_kernel<T, A, decltype(i)>; }, dy, argmax, dx);
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, const ConvGeom& g, Stream stream) {
    launch_pool("avg_pool2d_forward_kernel", pooled_size(g), g, stream,
                [](auto i) { return avg_forward_kernel<T, decltype(i)>; }, x, y);
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const ConvGeom& g, Stream stream) {
    launch_pool("avg_pool2d_backward_kernel", g.in_size(), g, stream,
                [](auto i) { return avg_backward_kernel<T, decltype(i)>; }, dy, dx);
}

template <class T>
void global_avg_pool2d_forward(const T* x, T* y, index_t N, index_t HW, index_t C, Stream stream) {
    if (N == 0) return;
    CNNKIT_LAUNCH("global_avg_pool2d_forward_kernel", global_avg_forward_kernel<T>,
                  grid_for(global_blocks(N, C), 1), dim3(32, kGlobalLanes), 0, as_stream(stream), x, y, N, HW, C);
}

template <class T>
void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, Stream stream) {
    const index_t count = global_size(N, HW, C);
    if (count == 0) return;
    with_index_type(fits32({count}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("global_avg_pool2d_backward_kernel", (global_avg_backward_kernel<T, I>), grid_for(count),
                      kThreads, 0, as_stream(stream), dy, dx, I(HW), I(C), I(count));
    });
}

template <class T, class A>
void global_max_pool2d_forward(const T* x, T* y, A* argmax, index_t N, index_t HW, index_t C, Stream stream) {
    if (N == 0) return;
    CNNKIT_LAUNCH("global_max_pool2d_forward_kernel", (global_max_forward_kernel<T, A>),
                  grid_for(global_blocks(N, C), 1), dim3(32, kGlobalLanes), 0, as_stream(stream), x, y, argmax, N,
                  HW, C);
}

template <class T, class A>
void global_max_pool2d_backward(const T* dy, const A* argmax, T* dx, index_t N, index_t HW, index_t C,
                                Stream stream) {
    const index_t count = global_size(N, HW, C);
    if (count == 0) return;
    with_index_type(fits32({count}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("global_max_pool2d_backward_kernel", (global_max_backward_kernel<T, A, I>), grid_for(count),
                      kThreads, 0, as_stream(stream), dy, argmax, dx, I(HW), I(C), I(count));
    });
}

template <class T, class A>
void stochastic_pool2d_forward(const T* x, T* y, A* index, const ConvGeom& g, bool training, std::uint64_t seed,
                               Stream stream) {
    launch_pool("stochastic_pool2d_forward_kernel", pooled_size(g), g, stream,
                [](auto i) { return stochastic_forward_kernel<T, A, decltype(i)>; }, x, y, index, training, seed);
}

template <class T>
void stochastic_pool2d_backward_inference(const T* dy, const T* x, T* dx, const ConvGeom& g, Stream stream) {
    launch_pool("stochastic_pool2d_backward_inference_kernel", g.in_size(), g, stream,
                [](auto i) { return stochastic_backward_inference_kernel<T, decltype(i)>; }, dy, x, dx);
}

CNNKIT_INSTANTIATE_POOL(float)
CNNKIT_INSTANTIATE_POOL(double)

}  // namespace cuda
}  // namespace cnnkit
