// pool.cpp (cnnkit._cuda_host, test-only): csrc/cuda/pool.cu's launchers on the CPU, one call of the
// kernels' per-element functions (cuda/pool.cuh) per element of their grids; for global pooling's
// forwards, every block b of the grid, each thread's lane work, and the lanes combined in the
// kernel's order (its shared-memory step).
#include <vector>

#include "cuda/pool.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {
namespace {

// One call f(e, Geom<I>) per element e of [0, count), I as the launcher (and `stream`) pick.
template <class F>
void pool_loop(const char* what, index_t count, const ConvGeom& g, Stream stream, F&& f) {
    with_index_type(stream, cuda::pool_index32(g), what, [&](auto tag) {
        using I = decltype(tag);
        const cuda::Geom<I> gi(g);
        for (I e = 0; e < I(count); ++e) f(e, gi);
    });
}

// The same for the global backwards, whose indices are the sizes only.
template <class F>
void global_loop(const char* what, index_t N, index_t HW, index_t C, Stream stream, F&& f) {
    const index_t count = cuda::global_size(N, HW, C);
    with_index_type(stream, cuda::fits32({count}), what, [&](auto tag) {
        using I = decltype(tag);
        for (I e = 0; e < I(count); ++e) f(e, I(HW), I(C));
    });
}

}  // namespace

template <class T, class A>
void max_pool2d_forward(const T* x, T* y, A* argmax, const ConvGeom& g, Stream stream) {
    pool_loop("max_pool2d_forward", cuda::pooled_size(g), g, stream,
              [&](auto e, const auto& gi) { cuda::max_forward_element(x, y, argmax, gi, e); });
}

template <class T, class A>
void max_pool2d_backward(const T* dy, const A* argmax, T* dx, const ConvGeom& g, Stream stream) {
    pool_loop("max_pool2d_backward", g.in_size(), g, stream,
              [&](auto e, const auto& gi) { cuda::max_backward_element(dy, argmax, dx, gi, e); });
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, const ConvGeom& g, Stream stream) {
    pool_loop("avg_pool2d_forward", cuda::pooled_size(g), g, stream,
              [&](auto e, const auto& gi) { cuda::avg_forward_element(x, y, gi, e); });
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const ConvGeom& g, Stream stream) {
    pool_loop("avg_pool2d_backward", g.in_size(), g, stream,
              [&](auto e, const auto& gi) { cuda::avg_backward_element(dy, dx, gi, e); });
}

template <class T, class A>
void stochastic_pool2d_forward(const T* x, T* y, A* index, const ConvGeom& g, bool training, std::uint64_t seed,
                               Stream stream) {
    pool_loop("stochastic_pool2d_forward", cuda::pooled_size(g), g, stream, [&](auto e, const auto& gi) {
        cuda::stochastic_forward_element(x, y, index, training, seed, gi, e);
    });
}

template <class T>
void stochastic_pool2d_backward_inference(const T* dy, const T* x, T* dx, const ConvGeom& g, Stream stream) {
    pool_loop("stochastic_pool2d_backward_inference", g.in_size(), g, stream,
              [&](auto e, const auto& gi) { cuda::stochastic_backward_inference_element(dy, x, dx, gi, e); });
}

// The global forwards index in 64 bits (no choice to make): blocks b of the grid, threads
// (channel lane tx, pixel lane ty), then thread ty == 0 combines the lanes in order.
template <class T>
void global_avg_pool2d_forward(const T* x, T* y, index_t N, index_t HW, index_t C, Stream) {
    set_last_index_bits(64);
    double lanes[cuda::kGlobalLanes];
    for (index_t b = 0; b < cuda::global_blocks(N, C); ++b) {
        const cuda::GlobalBlock blk = cuda::global_block(b, C);
        for (index_t c = blk.c0; c < blk.c0 + 32; ++c) {
            for (int l = 0; l < cuda::kGlobalLanes; ++l) lanes[l] = cuda::global_avg_lane_sum(x, HW, C, blk.n, c, l);
            if (c >= C) continue;
            double t = 0.0;
            for (int l = 0; l < cuda::kGlobalLanes; ++l) t += lanes[l];
            y[blk.n * C + c] = static_cast<T>(t / static_cast<double>(HW));
        }
    }
}

template <class T, class A>
void global_max_pool2d_forward(const T* x, T* y, A* argmax, index_t N, index_t HW, index_t C, Stream) {
    set_last_index_bits(64);
    T vals[cuda::kGlobalLanes];
    index_t args[cuda::kGlobalLanes];
    for (index_t b = 0; b < cuda::global_blocks(N, C); ++b) {
        const cuda::GlobalBlock blk = cuda::global_block(b, C);
        for (index_t c = blk.c0; c < blk.c0 + 32; ++c) {
            for (int l = 0; l < cuda::kGlobalLanes; ++l) cuda::global_max_lane(x, HW, C, blk.n, c, l, vals[l], args[l]);
            if (c >= C) continue;
            T best = vals[0];
            index_t arg = args[0];
            for (int l = 1; l < cuda::kGlobalLanes; ++l)
                if (args[l] >= 0 && cuda::beats(vals[l], args[l], best, arg)) best = vals[l], arg = args[l];
            y[blk.n * C + c] = best;
            if (argmax) argmax[blk.n * C + c] = static_cast<A>(arg);
        }
    }
}

template <class T>
void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, Stream stream) {
    global_loop("global_avg_pool2d_backward", N, HW, C, stream,
                [&](auto e, auto hw, auto c) { cuda::global_avg_backward_element(dy, dx, hw, c, e); });
}

template <class T, class A>
void global_max_pool2d_backward(const T* dy, const A* argmax, T* dx, index_t N, index_t HW, index_t C,
                                Stream stream) {
    global_loop("global_max_pool2d_backward", N, HW, C, stream,
                [&](auto e, auto hw, auto c) { cuda::global_max_backward_element(dy, argmax, dx, hw, c, e); });
}

CNNKIT_INSTANTIATE_POOL(float)
CNNKIT_INSTANTIATE_POOL(double)

}  // namespace cuda_host
}  // namespace cnnkit
