// pool.cu: the CUDA twin of csrc/cpu/pool.cpp: max, average, global and stochastic pooling over NHWC
// activations, forward and backward, with the CPU's rules: NaN is the maximum (the first NaN in scan
// order wins), ties go to the first cell in scan order (window rows outer, columns inner), padded
// cells never win and are not counted by the average, the index is the flat in-image h*W + w.
// Forwards: one thread per output element (n, oh, ow, c), consecutive threads on consecutive
// channels (coalesced). Backwards are GATHERS, one thread per input element, summing the windows
// that cover it in (oh, ow) order, the first assigning: no atomics, deterministic, and the same
// operations in the same order as the CPU (so results agree bit for bit, up to FMA contraction).
// Global average: one block per (image, 32 channels), 8 pixel lanes summing in double, added in
// lane order. Stochastic pooling draws uniform01(seed, flat output index) exactly as the CPU does,
// with the same double sums in the same order, so it picks the same cells.
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

template <class T, class I>
__global__ void max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, I* __restrict__ argmax,
                                   const ConvGeom g, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t ow = pix % g.OW, row = pix / g.OW, oh = row % g.OH, n = row / g.OH;
        const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H), rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
        T best = -static_cast<T>(INFINITY);
        index_t arg = -1;
        if (rh.lo < rh.hi && rw.lo < rw.hi) {
            const T* xn = x + n * g.H * g.W * g.C + c;
            arg = rh.lo * g.W + rw.lo;
            best = xn[arg * g.C];
            for (index_t h = rh.lo; h < rh.hi; ++h)
                for (index_t w = (h == rh.lo ? rw.lo + 1 : rw.lo); w < rw.hi; ++w) {
                    const T v = xn[(h * g.W + w) * g.C];
                    if (takes(v, best)) best = v, arg = h * g.W + w;
                }
        }
        if (y) y[e] = best;
        if (argmax) argmax[e] = static_cast<I>(arg);
    }
}

template <class T, class I>
__global__ void max_backward_kernel(const T* __restrict__ dy, const I* __restrict__ argmax, T* __restrict__ dx,
                                    const ConvGeom g, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t w = pix % g.W, row = pix / g.W, h = row % g.H, n = row / g.H;
        const Range ohr = covering_range(h, g.SH, g.PT, g.KH, g.OH), owr = covering_range(w, g.SW, g.PL, g.KW, g.OW);
        const I k = static_cast<I>(h * g.W + w);
        T d = T(0);
        bool first = true;
        for (index_t oh = ohr.lo; oh < ohr.hi; ++oh)
            for (index_t ow = owr.lo; ow < owr.hi; ++ow) {
                const index_t o = ((n * g.OH + oh) * g.OW + ow) * g.C + c;
                const T v = argmax[o] == k ? dy[o] : T(0);
                d = first ? v : d + v;
                first = false;
            }
        dx[e] = d;
    }
}

template <class T>
__global__ void avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, const ConvGeom g, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t ow = pix % g.OW, row = pix / g.OW, oh = row % g.OH, n = row / g.OH;
        const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H), rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
        T s = T(0);
        if (rh.lo < rh.hi && rw.lo < rw.hi) {
            const T* xn = x + n * g.H * g.W * g.C + c;
            s = xn[(rh.lo * g.W + rw.lo) * g.C];
            for (index_t h = rh.lo; h < rh.hi; ++h)
                for (index_t w = (h == rh.lo ? rw.lo + 1 : rw.lo); w < rw.hi; ++w) s += xn[(h * g.W + w) * g.C];
            const T inv = T(1) / static_cast<T>((rh.hi - rh.lo) * (rw.hi - rw.lo));
            s *= inv;
        }
        y[e] = s;
    }
}

template <class T>
__global__ void avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, const ConvGeom g, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t w = pix % g.W, row = pix / g.W, h = row % g.H, n = row / g.H;
        const Range ohr = covering_range(h, g.SH, g.PT, g.KH, g.OH), owr = covering_range(w, g.SW, g.PL, g.KW, g.OW);
        T d = T(0);
        bool first = true;
        for (index_t oh = ohr.lo; oh < ohr.hi; ++oh) {
            const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            for (index_t ow = owr.lo; ow < owr.hi; ++ow) {
                const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                const T inv = T(1) / static_cast<T>((rh.hi - rh.lo) * (rw.hi - rw.lo));
                const T v = dy[((n * g.OH + oh) * g.OW + ow) * g.C + c] * inv;
                d = first ? v : d + v;
                first = false;
            }
        }
        dx[e] = d;
    }
}

constexpr int kLanesY = 8;

// grid (ceil(C / 32), N); block (32, 8).
template <class T>
__global__ void global_avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, index_t HW, index_t C) {
    __shared__ double sh[kLanesY][32];
    const index_t c = static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x, n = blockIdx.y;
    double s = 0.0;
    if (c < C)
        for (index_t p = threadIdx.y; p < HW; p += kLanesY) s += static_cast<double>(x[(n * HW + p) * C + c]);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0.0;
        for (int l = 0; l < kLanesY; ++l) t += sh[l][threadIdx.x];
        y[n * C + c] = static_cast<T>(t / static_cast<double>(HW));
    }
}

template <class T>
__global__ void global_avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, index_t HW, index_t C,
                                           index_t count) {
    const T inv = T(1) / static_cast<T>(HW);
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % C, n = e / C / HW;
        dx[e] = dy[n * C + c] * inv;
    }
}

template <class T, class I>
__global__ void global_max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, I* __restrict__ argmax,
                                          index_t HW, index_t C, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {  // e = n * C + c
        const index_t c = e % C, n = e / C;
        const T* xn = x + n * HW * C + c;
        T best = xn[0];
        index_t arg = 0;
        for (index_t p = 1; p < HW; ++p) {
            const T v = xn[p * C];
            if (takes(v, best)) best = v, arg = p;
        }
        y[e] = best;
        if (argmax) argmax[e] = static_cast<I>(arg);
    }
}

template <class T, class I>
__global__ void global_max_backward_kernel(const T* __restrict__ dy, const I* __restrict__ argmax,
                                           T* __restrict__ dx, index_t HW, index_t C, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % C, np = e / C, n = np / HW;
        const I k = static_cast<I>(np % HW);
        dx[e] = argmax[n * C + c] == k ? dy[n * C + c] : T(0);
    }
}

template <class T>
__device__ __forceinline__ double positive(T v) {
    return v > T(0) ? static_cast<double>(v) : 0.0;  // NaN -> 0
}

template <class T, class I>
__global__ void stochastic_forward_kernel(const T* __restrict__ x, T* __restrict__ y, I* __restrict__ index,
                                          const ConvGeom g, bool training, std::uint64_t seed, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t ow = pix % g.OW, row = pix / g.OW, oh = row % g.OH, n = row / g.OH;
        const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H), rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
        const T* xn = x + n * g.H * g.W * g.C + c;
        if (rh.lo >= rh.hi || rw.lo >= rw.hi) {
            y[e] = T(0);
            if (index) index[e] = I(-1);
            continue;
        }
        double s = 0.0, q = 0.0;
        for (index_t h = rh.lo; h < rh.hi; ++h)
            for (index_t w = rw.lo; w < rw.hi; ++w) {
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
        index_t pick = -1, last = -1;
        for (index_t h = rh.lo; h < rh.hi; ++h)
            for (index_t w = rw.lo; w < rw.hi; ++w) {
                const index_t k = h * g.W + w;
                const double a = positive(xn[k * g.C]);
                last = a > 0.0 ? k : last;
                run += a;
                pick = (pick < 0 && run > t) ? k : pick;
            }
        const index_t k = s == 0.0 ? -1 : (pick >= 0 ? pick : last);
        y[e] = k < 0 ? T(0) : xn[k * g.C];
        if (index) index[e] = static_cast<I>(k);
    }
}

// dx_j = sum over windows o covering j of dy_o * (2 a_j - y_o) / S_o for x_j > 0, else 0; each
// window's S_o and y_o = sum(a^2) / S_o are recomputed from x (a few cells) in the CPU's order.
template <class T>
__global__ void stochastic_backward_inference_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                     T* __restrict__ dx, const ConvGeom g, index_t count) {
    CNNKIT_GRID_LOOP(e, count) {
        const index_t c = e % g.C, pix = e / g.C;
        const index_t w = pix % g.W, row = pix / g.W, h = row % g.H, n = row / g.H;
        const T xv = x[e];
        const double aj = positive(xv);
        const T* xn = x + n * g.H * g.W * g.C + c;
        const Range ohr = covering_range(h, g.SH, g.PT, g.KH, g.OH), owr = covering_range(w, g.SW, g.PL, g.KW, g.OW);
        double acc = 0.0;
        for (index_t oh = ohr.lo; oh < ohr.hi; ++oh) {
            const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            for (index_t ow = owr.lo; ow < owr.hi; ++ow) {
                const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                double s = 0.0, q = 0.0;
                for (index_t hh = rh.lo; hh < rh.hi; ++hh)
                    for (index_t ww = rw.lo; ww < rw.hi; ++ww) {
                        const double a = positive(xn[(hh * g.W + ww) * g.C]);
                        s += a;
                        q += a * a;
                    }
                const bool pos = s > 0.0;
                const double yo = pos ? q / s : 0.0, inv_s = pos ? 1.0 / s : 0.0;
                acc += static_cast<double>(dy[((n * g.OH + oh) * g.OW + ow) * g.C + c]) * (2.0 * aj - yo) * inv_s;
            }
        }
        dx[e] = xv > T(0) ? static_cast<T>(acc) : T(0);
    }
}

}  // namespace

#define CNNKIT_STREAM as_stream(stream)

template <class T, class I>
void max_pool2d_forward(const T* x, T* y, I* argmax, const ConvGeom& g, void* stream) {
    const index_t count = checked_mul(g.out_pixels(), g.C, "pool output size");
    if (count == 0) return;
    CNNKIT_LAUNCH("max_pool2d_forward_kernel", (max_forward_kernel<T, I>), grid_for(count), kThreads, 0,
                  CNNKIT_STREAM, x, y, argmax, g, count);
}

template <class T, class I>
void max_pool2d_backward(const T* dy, const I* argmax, T* dx, const ConvGeom& g, void* stream) {
    const index_t count = g.in_size();
    if (count == 0) return;
    CNNKIT_LAUNCH("max_pool2d_backward_kernel", (max_backward_kernel<T, I>), grid_for(count), kThreads, 0,
                  CNNKIT_STREAM, dy, argmax, dx, g, count);
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, const ConvGeom& g, void* stream) {
    const index_t count = checked_mul(g.out_pixels(), g.C, "pool output size");
    if (count == 0) return;
    CNNKIT_LAUNCH("avg_pool2d_forward_kernel", avg_forward_kernel<T>, grid_for(count), kThreads, 0, CNNKIT_STREAM,
                  x, y, g, count);
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const ConvGeom& g, void* stream) {
    const index_t count = g.in_size();
    if (count == 0) return;
    CNNKIT_LAUNCH("avg_pool2d_backward_kernel", avg_backward_kernel<T>, grid_for(count), kThreads, 0,
                  CNNKIT_STREAM, dy, dx, g, count);
}

template <class T>
void global_avg_pool2d_forward(const T* x, T* y, index_t N, index_t HW, index_t C, void* stream) {
    if (N == 0) return;
    require(N <= 65535, "global_avg_pool2d_forward: batches above 65535 images are not supported on the GPU; "
                        "split the batch");
    const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(N));
    CNNKIT_LAUNCH("global_avg_pool2d_forward_kernel", global_avg_forward_kernel<T>, grid, dim3(32, kLanesY), 0,
                  CNNKIT_STREAM, x, y, HW, C);
}

template <class T>
void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, void* stream) {
    const index_t count = checked_mul(checked_mul(N, HW, "size"), C, "size");
    if (count == 0) return;
    CNNKIT_LAUNCH("global_avg_pool2d_backward_kernel", global_avg_backward_kernel<T>, grid_for(count), kThreads,
                  0, CNNKIT_STREAM, dy, dx, HW, C, count);
}

template <class T, class I>
void global_max_pool2d_forward(const T* x, T* y, I* argmax, index_t N, index_t HW, index_t C, void* stream) {
    const index_t count = checked_mul(N, C, "size");
    if (count == 0) return;
    CNNKIT_LAUNCH("global_max_pool2d_forward_kernel", (global_max_forward_kernel<T, I>), grid_for(count, 128),
                  128, 0, CNNKIT_STREAM, x, y, argmax, HW, C, count);
}

template <class T, class I>
void global_max_pool2d_backward(const T* dy, const I* argmax, T* dx, index_t N, index_t HW, index_t C,
                                void* stream) {
    const index_t count = checked_mul(checked_mul(N, HW, "size"), C, "size");
    if (count == 0) return;
    CNNKIT_LAUNCH("global_max_pool2d_backward_kernel", (global_max_backward_kernel<T, I>), grid_for(count),
                  kThreads, 0, CNNKIT_STREAM, dy, argmax, dx, HW, C, count);
}

template <class T, class I>
void stochastic_pool2d_forward(const T* x, T* y, I* index, const ConvGeom& g, bool training, std::uint64_t seed,
                               void* stream) {
    const index_t count = checked_mul(g.out_pixels(), g.C, "pool output size");
    if (count == 0) return;
    CNNKIT_LAUNCH("stochastic_pool2d_forward_kernel", (stochastic_forward_kernel<T, I>), grid_for(count),
                  kThreads, 0, CNNKIT_STREAM, x, y, index, g, training, seed, count);
}

template <class T>
void stochastic_pool2d_backward_inference(const T* dy, const T* x, T* dx, const ConvGeom& g, void* stream) {
    const index_t count = g.in_size();
    if (count == 0) return;
    CNNKIT_LAUNCH("stochastic_pool2d_backward_inference_kernel", stochastic_backward_inference_kernel<T>,
                  grid_for(count), kThreads, 0, CNNKIT_STREAM, dy, x, dx, g, count);
}

#define CNNKIT_INSTANTIATE_TI(T, I)                                                                          \
    template void max_pool2d_forward<T, I>(const T*, T*, I*, const ConvGeom&, void*);                        \
    template void max_pool2d_backward<T, I>(const T*, const I*, T*, const ConvGeom&, void*);                 \
    template void global_max_pool2d_forward<T, I>(const T*, T*, I*, index_t, index_t, index_t, void*);       \
    template void global_max_pool2d_backward<T, I>(const T*, const I*, T*, index_t, index_t, index_t, void*); \
    template void stochastic_pool2d_forward<T, I>(const T*, T*, I*, const ConvGeom&, bool, std::uint64_t, void*);
#define CNNKIT_INSTANTIATE_T(T)                                                                              \
    template void avg_pool2d_forward<T>(const T*, T*, const ConvGeom&, void*);                               \
    template void avg_pool2d_backward<T>(const T*, T*, const ConvGeom&, void*);                              \
    template void global_avg_pool2d_forward<T>(const T*, T*, index_t, index_t, index_t, void*);              \
    template void global_avg_pool2d_backward<T>(const T*, T*, index_t, index_t, index_t, void*);             \
    template void stochastic_pool2d_backward_inference<T>(const T*, const T*, T*, const ConvGeom&, void*);   \
    CNNKIT_INSTANTIATE_TI(T, std::int32_t)                                                                   \
    CNNKIT_INSTANTIATE_TI(T, std::int64_t)
CNNKIT_INSTANTIATE_T(float)
CNNKIT_INSTANTIATE_T(double)

}  // namespace cuda
}  // namespace cnnkit
