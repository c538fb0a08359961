// pool.cuh: the per-element (per-thread) work of the pooling kernels (pool.cu), __host__ __device__
// so that the host test module cnnkit._cuda_host runs exactly this arithmetic on the CPU over the
// same grids (tests marked cuda_host), and the choice of index type and grid for each launch. The
// rules are the CPU's (cpu/pool.cpp): see pool.cu's header.
#pragma once

#include <cmath>

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda {

// The CPU's max_update for one channel: take v if it is larger, or NaN while the best is not.
template <class T>
CNNKIT_HD bool takes(T v, T best) {
    return !(v <= best) && (best == best);
}

template <class T>
CNNKIT_HD double positive(T v) {
    return v > T(0) ? static_cast<double>(v) : 0.0;  // NaN -> 0
}

// (n, row, col, c) of element e of an NHWC array of rows x cols pixels.
template <class I>
struct Nhwc {
    I c, col, row, n;
    CNNKIT_HD Nhwc(I e, I rows, I cols, I C) {
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
    CNNKIT_HD OutPos(I e, const Geom<I>& g)
        : Nhwc<I>(e, g.OH, g.OW, g.C), rh(window_range(this->row, g.SH, g.PT, g.KH, g.H)),
          rw(window_range(this->col, g.SW, g.PL, g.KW, g.W)) {}
    CNNKIT_HD bool empty() const { return rh.lo >= rh.hi || rw.lo >= rw.hi; }
};

// Input element e: (n, h, w, c) and the outputs whose windows cover it.
template <class I>
struct InPos : Nhwc<I> {
    RangeT<I> ohr, owr;
    CNNKIT_HD InPos(I e, const Geom<I>& g)
        : Nhwc<I>(e, g.H, g.W, g.C), ohr(covering_range(this->row, g.SH, g.PT, g.KH, g.OH)),
          owr(covering_range(this->col, g.SW, g.PL, g.KW, g.OW)) {}
};

template <class T, class A, class I>
CNNKIT_HD void max_forward_element(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ argmax,
                                   const Geom<I>& g, I e) {
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

template <class T, class A, class I>
CNNKIT_HD void max_backward_element(const T* __restrict__ dy, const A* __restrict__ argmax, T* __restrict__ dx,
                                    const Geom<I>& g, I e) {
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

template <class T, class I>
CNNKIT_HD void avg_forward_element(const T* __restrict__ x, T* __restrict__ y, const Geom<I>& g, I e) {
    const OutPos<I> o(e, g);
    if (o.empty()) {
        y[e] = T(0);
        return;
    }
    const T* xn = x + o.n * g.H * g.W * g.C + o.c;
    T s = xn[(o.rh.lo * g.W + o.rw.lo) * g.C];
    for (I h = o.rh.lo; h < o.rh.hi; ++h)
        for (I w = (h == o.rh.lo ? o.rw.lo + 1 : o.rw.lo); w < o.rw.hi; ++w) s += xn[(h * g.W + w) * g.C];
    y[e] = s * (T(1) / static_cast<T>((o.rh.hi - o.rh.lo) * (o.rw.hi - o.rw.lo)));
}

template <class T, class I>
CNNKIT_HD void avg_backward_element(const T* __restrict__ dy, T* __restrict__ dx, const Geom<I>& g, I e) {
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

template <class T, class A, class I>
CNNKIT_HD void stochastic_forward_element(const T* __restrict__ x, T* __restrict__ y, A* __restrict__ index,
                                          bool training, std::uint64_t seed, const Geom<I>& g, I e) {
    const OutPos<I> o(e, g);
    if (o.empty()) {
        y[e] = T(0);
        if (index) index[e] = A(-1);
        return;
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
        return;
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

// dx_j = sum over windows o covering j of dy_o * (2 a_j - y_o) / S_o for x_j > 0, else 0; each
// window's S_o and y_o = sum(a^2) / S_o are recomputed from x (a few cells) in the CPU's order.
template <class T, class I>
CNNKIT_HD void stochastic_backward_inference_element(const T* __restrict__ dy, const T* __restrict__ x,
                                                     T* __restrict__ dx, const Geom<I>& g, I e) {
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

// Window pooling indexes in 32 bits when the geometry and every index fit (all below max(input
// size, output size)).
inline index_t pooled_size(const ConvGeom& g) { return checked_mul(g.out_pixels(), g.C, "pool output size"); }
inline bool pool_index32(const ConvGeom& g) { return fits32(g, {g.in_size(), pooled_size(g)}); }

// Global pooling: block (32 channels, kGlobalLanes pixel lanes) per (image, tile of 32 channels),
// the blocks numbered b = n * tiles + tile along x of the grid (a block-stride loop over b: no
// limit on N, where gridDim.y had 65535), lane l scanning pixels l, l + kGlobalLanes, ... and the
// lanes combined in lane order.
constexpr int kGlobalLanes = 32;
struct GlobalBlock {
    index_t n, c0;  // the image and the tile's first channel
};
CNNKIT_HD index_t global_tiles(index_t C) { return (C + 31) / 32; }
CNNKIT_HD index_t global_blocks(index_t N, index_t C) { return N * global_tiles(C); }
CNNKIT_HD GlobalBlock global_block(index_t b, index_t C) {
    const index_t tiles = global_tiles(C), n = b / tiles;
    return {n, (b - n * tiles) * 32};
}

// Lane `lane` of channel c of image n: the sum of its pixels in double.
template <class T>
CNNKIT_HD double global_avg_lane_sum(const T* __restrict__ x, index_t HW, index_t C, index_t n, index_t c,
                                     int lane) {
    double s = 0.0;
    if (c < C)
        for (index_t p = lane; p < HW; p += kGlobalLanes) s += static_cast<double>(x[(n * HW + p) * C + c]);
    return s;
}

// Lane `lane` of channel c of image n: the max rule over its own pixels in increasing order (the
// first NaN, else the first maximum) into best and arg (arg = -1: the lane has no pixel).
template <class T>
CNNKIT_HD void global_max_lane(const T* __restrict__ x, index_t HW, index_t C, index_t n, index_t c, int lane,
                               T& best, index_t& arg) {
    best = T(0);
    arg = -1;
    if (c < C && lane < HW) {
        const T* xn = x + n * HW * C + c;
        arg = lane;
        best = xn[arg * C];
        for (index_t p = arg + kGlobalLanes; p < HW; p += kGlobalLanes) {
            const T v = xn[p * C];
            if (takes(v, best)) best = v, arg = p;
        }
    }
}

// Merging lanes keeps the rule over all pixels: a NaN beats a number and the earlier of two NaNs
// wins; between numbers the larger wins and a tie goes to the earlier pixel.
template <class T>
CNNKIT_HD bool beats(T v, index_t p, T best, index_t bp) {
    const bool vn = v != v, bn = best != best;
    if (vn || bn) return vn && (!bn || p < bp);
    return v > best || (v == best && p < bp);
}

// The global backwards: one thread per element of the (N, HW, C) image, 32-bit indices when its
// size fits.
inline index_t global_size(index_t N, index_t HW, index_t C) {
    return checked_mul(checked_mul(N, HW, "size"), C, "size");
}

template <class T, class I>
CNNKIT_HD void global_avg_backward_element(const T* __restrict__ dy, T* __restrict__ dx, I HW, I C, I e) {
    const T inv = T(1) / static_cast<T>(HW);
    const I c = e % C, n = e / C / HW;
    dx[e] = dy[n * C + c] * inv;
}

template <class T, class A, class I>
CNNKIT_HD void global_max_backward_element(const T* __restrict__ dy, const A* __restrict__ argmax,
                                           T* __restrict__ dx, I HW, I C, I e) {
    const I c = e % C, np = e / C, n = np / HW;
    const A k = static_cast<A>(np % HW);
    dx[e] = argmax[n * C + c] == k ? dy[n * C + c] : T(0);
}

}  // namespace cuda
}  // namespace cnnkit
