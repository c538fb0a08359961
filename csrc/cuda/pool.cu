// pool.cu: the CUDA twin of csrc/cpu/pool.cpp: max, average, global and stochastic pooling over NHWC
// activations, forward and backward, with the CPU's rules: NaN is the maximum (the first NaN in scan
// order wins), ties go to the first cell in scan order (window rows outer, columns inner), padded
// cells never win and are not counted by the average, the index is the flat in-image h*W + w; a
// window with no input cell gives -inf and index -1 (max), 0 (average, stochastic).
// Forwards: one thread per output element (n, oh, ow, c), consecutive threads on consecutive
// channels (coalesced). Backwards are GATHERS, one thread per input element, summing the windows
// that cover it in (oh, ow) order, the first assigning: no atomics, deterministic, and the same
// operations in the same order as the CPU. Global average and max: one block per (image, 32
// channels), 32 pixel lanes, combined in lane order (the sum in double; the max by the same rule). Stochastic pooling draws
// uniform01(seed, flat output index) exactly as the CPU does, with the same double sums in the same
// order, so it picks the same cells. Index arithmetic is 32-bit when every index fits (I = int32_t,
// see fits32 in check.cuh), else 64-bit; argmax/index arrays are A = int32_t or int64_t.
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

// The CPU's max_update for one channel: take v if it is larger, or NaN while the best is not.
template <class T>
__device__ __forceinline__ bool takes(T v, T best) {
    return !(v <= best) && (best == best);
}

template <class T>
__device__ __forceinline__ double positive(T v) {
    return v > T(0) ? static_cast<double>(v) : 0.0;  // NaN -> 0
}

// (n, row, col, c) of element e of an NHWC array of rows x cols pixels.
template <class I>
struct Nhwc {
    I c, col, row, n;
    __device__ Nhwc(I e, I rows, I cols, I C) {
        c = e % C;
        const I pix = e / C;
        col = pix % cols;
        const I nr = pix / cols;
        row = nr % rows;
        n = nr / rows;
    }
};

// Output element e: (n, oh, ow, c) and its window clipped to the image.
template <class I>
struct OutPos : Nhwc<I> {
    RangeT<I> rh, rw;
    __device__ OutPos(I e, const Geom<I>& g)
        : Nhwc<I>(e, g.OH, g.OW, g.C), rh(window_range(this->row, g.SH, g.PT, g.KH, g.H)),
          rw(window_range(this->col, g.SW, g.PL, g.KW, g.W)) {}
    __device__ bool empty() const { return rh.lo >= rh.hi || rw.lo >= rw.hi; }
};

// Input element e: (n, h, w, c) and the outputs whose windows cover it.
template <class I>
struct InPos : Nhwc<I> {
    RangeT<I> ohr, owr;
    __device__ InPos(I e, const Geom<I>& g)
        : Nhwc<I>(e, g.H, g.W, g.C), ohr(covering_range(this->row, g.SH, g.PT, g.KH, g.OH)),
          owr(covering_range(this->col, g.SW, g.PL, g.KW, g.OW)) {}
};

template <class T, class A, class I>
__global__ void max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ argmax,
                                   const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const OutPos<I> o(e, g);
        T best = -static_cast<T>(INFINITY);
        I arg = -1;
        if (!o.empty()) {
            const T* xn = x + o.n * g.H * g.W * g.C + o.c;
            arg = o.rh.lo * g.W + o.rw.lo;
            best = xn[arg * g.C];
            for (I h = o.rh.lo; h < o.rh.hi; ++h)
                for (I w = (h == o.rh.lo ? o.rw.lo + 1 : o.rw.lo); w < o.rw.hi; ++w) {
                    const T v = xn[(h * g.W + w) * g.C];
                    if (takes(v, best)) best = v, arg = h * g.W + w;
                }
        }
        if (y) y[e] = best;
        if (argmax) argmax[e] = static_cast<A>(arg);
    }
}

template <class T, class A, class I>
__global__ void max_backward_kernel(const T* __restrict__ dy, const A* __restrict__ argmax, T* __restrict__ dx,
                                    const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const InPos<I> p(e, g);
        const A k = static_cast<A>(p.row * g.W + p.col);
        T d = T(0);
        bool first = true;
        for (I oh = p.ohr.lo; oh < p.ohr.hi; ++oh)
            for (I ow = p.owr.lo; ow < p.owr.hi; ++ow) {
                const I o = ((p.n * g.OH + oh) * g.OW + ow) * g.C + p.c;
                const T v = argmax[o] == k ? dy[o] : T(0);
                d = first ? v : d + v;
                first = false;
            }
        dx[e] = d;
    }
}

template <class T, class I>
__global__ void avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const OutPos<I> o(e, g);
        if (o.empty()) {
            y[e] = T(0);
            continue;
        }
        const T* xn = x + o.n * g.H * g.W * g.C + o.c;
        T s = xn[(o.rh.lo * g.W + o.rw.lo) * g.C];
        for (I h = o.rh.lo; h < o.rh.hi; ++h)
            for (I w = (h == o.rh.lo ? o.rw.lo + 1 : o.rw.lo); w < o.rw.hi; ++w) s += xn[(h * g.W + w) * g.C];
        y[e] = s * (T(1) / static_cast<T>((o.rh.hi - o.rh.lo) * (o.rw.hi - o.rw.lo)));
    }
}

template <class T, class I>
__global__ void avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const InPos<I> p(e, g);
        T d = T(0);
        bool first = true;
        for (I oh = p.ohr.lo; oh < p.ohr.hi; ++oh) {
            const RangeT<I> rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            for (I ow = p.owr.lo; ow < p.owr.hi; ++ow) {
                const RangeT<I> rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                const T inv = T(1) / static_cast<T>((rh.hi - rh.lo) * (rw.hi - rw.lo));
                const T v = dy[((p.n * g.OH + oh) * g.OW + ow) * g.C + p.c] * inv;
                d = first ? v : d + v;
                first = false;
            }
        }
        dx[e] = d;
    }
}

// Global pooling: block (32 channels, kLanesY pixel lanes) per (channel tile, image), grid
// (ceil(C / 32), N); lane l scans pixels l, l + kLanesY, ... and the lanes are combined in lane order.
constexpr int kLanesY = 32;

template <class T>
__global__ void global_avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, index_t HW, index_t C) {
    __shared__ double sh[kLanesY][32];
    const index_t c = static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x, n = blockIdx.y;
    double s = 0.0;
    if (c < C) {
#pragma unroll 4
        for (index_t p = threadIdx.y; p < HW; p += kLanesY) s += static_cast<double>(x[(n * HW + p) * C + c]);
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0.0;
        for (int l = 0; l < kLanesY; ++l) t += sh[l][threadIdx.x];
        y[n * C + c] = static_cast<T>(t / static_cast<double>(HW));
    }
}

template <class T, class I>
__global__ void global_avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, I HW, I C, I count) {
    const T inv = T(1) / static_cast<T>(HW);
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const I c = e % C, n = e / C / HW;
        dx[e] = dy[n * C + c] * inv;
    }
}

// Each lane keeps the max rule over its own pixels in increasing order (the first NaN, else the
// first maximum); merging lanes then keeps the rule over all pixels: a NaN beats a number and the
// earlier of two NaNs wins; between numbers the larger wins and a tie goes to the earlier pixel.
template <class T>
__device__ __forceinline__ bool beats(T v, index_t p, T best, index_t bp) {
    const bool vn = v != v, bn = best != best;
    if (vn || bn) return vn && (!bn || p < bp);
    return v > best || (v == best && p < bp);
}

template <class T, class A>
__global__ void global_max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ argmax,
                                          index_t HW, index_t C) {
    __shared__ T shv[kLanesY][32];
    __shared__ index_t shp[kLanesY][32];
    const index_t c = static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x, n = blockIdx.y;
    T best = T(0);
    index_t arg = -1;  // this lane has no pixel (HW < kLanesY)
    if (c < C && static_cast<index_t>(threadIdx.y) < HW) {
        const T* xn = x + n * HW * C + c;
        arg = threadIdx.y;
        best = xn[arg * C];
        for (index_t p = arg + kLanesY; p < HW; p += kLanesY) {
            const T v = xn[p * C];
            if (takes(v, best)) best = v, arg = p;
        }
    }
    shv[threadIdx.y][threadIdx.x] = best;
    shp[threadIdx.y][threadIdx.x] = arg;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int l = 1; l < kLanesY; ++l) {
            const index_t p = shp[l][threadIdx.x];
            if (p >= 0 && beats(shv[l][threadIdx.x], p, best, arg)) best = shv[l][threadIdx.x], arg = p;
        }
        y[n * C + c] = best;
        if (argmax) argmax[n * C + c] = static_cast<A>(arg);
    }
}

template <class T, class A, class I>
__global__ void global_max_backward_kernel(const T* __restrict__ dy, const A* __restrict__ argmax,
                                           T* __restrict__ dx, I HW, I C, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const I c = e % C, np = e / C, n = np / HW;
        const A k = static_cast<A>(np % HW);
        dx[e] = argmax[n * C + c] == k ? dy[n * C + c] : T(0);
    }
}

template <class T, class A, class I>
__global__ void stochastic_forward_kernel(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ index,
                                          bool training, std::uint64_t seed, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const OutPos<I> o(e, g);
        if (o.empty()) {
            y[e] = T(0);
            if (index) index[e] = A(-1);
            continue;
        }
        const T* xn = x + o.n * g.H * g.W * g.C + o.c;
        double s = 0.0, q = 0.0;
        for (I h = o.rh.lo; h < o.rh.hi; ++h)
            for (I w = o.rw.lo; w < o.rw.hi; ++w) {
                const double a = positive(xn[(h * g.W + w) * g.C]);
                s += a;
                q += a * a;
            }
        if (!training) {
            y[e] = static_cast<T>(s > 0.0 ? q / s : 0.0);
            continue;
        }
        const double t = uniform01(seed, static_cast<std::uint64_t>(e)) * s;
        double run = 0.0;
        I pick = -1, last = -1;
        for (I h = o.rh.lo; h < o.rh.hi; ++h)
            for (I w = o.rw.lo; w < o.rw.hi; ++w) {
                const I k = h * g.W + w;
                const double a = positive(xn[k * g.C]);
                last = a > 0.0 ? k : last;
                run += a;
                pick = (pick < 0 && run > t) ? k : pick;
            }
        const I k = s == 0.0 ? I(-1) : (pick >= 0 ? pick : last);
        y[e] = k < 0 ? T(0) : xn[k * g.C];
        if (index) index[e] = static_cast<A>(k);
    }
}

// dx_j = sum over windows o covering j of dy_o * (2 a_j - y_o) / S_o for x_j > 0, else 0; each
// window's S_o and y_o = sum(a^2) / S_o are recomputed from x (a few cells) in the CPU's order.
template <class T, class I>
__global__ void stochastic_backward_inference_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                     T* __restrict__ dx, const Geom<I> g, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const InPos<I> p(e, g);
        const T xv = x[e];
        const double aj = positive(xv);
        const T* xn = x + p.n * g.H * g.W * g.C + p.c;
        double acc = 0.0;
        for (I oh = p.ohr.lo; oh < p.ohr.hi; ++oh) {
            const RangeT<I> rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            for (I ow = p.owr.lo; ow < p.owr.hi; ++ow) {
                const RangeT<I> rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                double s = 0.0, q = 0.0;
                for (I hh = rh.lo; hh < rh.hi; ++hh)
                    for (I ww = rw.lo; ww < rw.hi; ++ww) {
                        const double a = positive(xn[(hh * g.W + ww) * g.C]);
                        s += a;
                        q += a * a;
                    }
                const bool pos = s > 0.0;
                const double yo = pos ? q / s : 0.0, inv_s = pos ? 1.0 / s : 0.0;
                acc += static_cast<double>(dy[((p.n * g.OH + oh) * g.OW + ow) * g.C + p.c]) * (2.0 * aj - yo) * inv_s;
            }
        }
        dx[e] = xv > T(0) ? static_cast<T>(acc) : T(0);
    }
}

// Launches kernel(args..., Geom<I>(g), I(count)), one thread per element of the output (a forward)
// or of the input (a gather), with I = int32_t when every index the kernel forms fits (they are all
// below max(input size, output size)), else int64; pick(I{}) names the kernel for that I.
template <class Pick, class... Args>
void launch_pool(const char* name, index_t count, const ConvGeom& g, Stream stream, Pick pick, Args... args) {
    if (count == 0) return;
    with_index_type(fits32({g.in_size(), g.out_pixels() * g.C}), [&](auto tag) {
        using I = decltype(tag);
        const auto kernel = pick(tag);
        CNNKIT_LAUNCH(name, kernel, grid_for(count), kThreads, 0, as_stream(stream), args..., Geom<I>(g), I(count));
    });
}

inline index_t pooled_size(const ConvGeom& g) { return checked_mul(g.out_pixels(), g.C, "pool output size"); }

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
    require(N <= 65535, "global_avg_pool2d_forward: batches above 65535 images are not supported on the GPU; "
                        "split the batch");
    const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(N));
    CNNKIT_LAUNCH("global_avg_pool2d_forward_kernel", global_avg_forward_kernel<T>, grid, dim3(32, kLanesY), 0,
                  as_stream(stream), x, y, HW, C);
}

template <class T>
void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, Stream stream) {
    const index_t count = checked_mul(checked_mul(N, HW, "size"), C, "size");
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
    require(N <= 65535, "global_max_pool2d_forward: batches above 65535 images are not supported on the GPU; "
                        "split the batch");
    const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(N));
    CNNKIT_LAUNCH("global_max_pool2d_forward_kernel", (global_max_forward_kernel<T, A>), grid, dim3(32, kLanesY), 0,
                  as_stream(stream), x, y, argmax, HW, C);
}

template <class T, class A>
void global_max_pool2d_backward(const T* dy, const A* argmax, T* dx, index_t N, index_t HW, index_t C,
                                Stream stream) {
    const index_t count = checked_mul(checked_mul(N, HW, "size"), C, "size");
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
