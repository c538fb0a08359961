// conv_direct.cuh: the per-thread work of the direct convolution kernels (conv_direct.cu),
// __host__ __device__ so that the host test module cnnkit._cuda_host runs exactly this arithmetic on
// the CPU over the same grid (tests marked cuda_host), and the choice of index type for each launch.
// A padded tap reads 0 and still contributes 0 * w (forward) or 0 * dy (weight gradient), as the
// CPU, the reference and the GEMM path do: an Inf or NaN weight (or dy) gives NaN there, whichever
// path runs.
#pragma once

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda {

// y[e], output element e = (n, oh, ow, o): bias, then the K taps in (kh, kw, c) order, then ReLU.
template <class T, class I>
CNNKIT_HD void direct_forward_element(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                      T* __restrict__ y, const Geom<I>& g, I O, bool relu, I e) {
    const I o = e % O, pix = e / O;
    const I ow = pix % g.OW, nr = pix / g.OW, oh = nr % g.OH, n = nr / g.OH;
    T acc = b ? b[o] : T(0);
    for (I i = 0; i < g.KH; ++i) {
        const I ih = oh * g.SH - g.PT + i * g.DH;
        const bool row_in = ih >= 0 && ih < g.H;
        for (I j = 0; j < g.KW; ++j) {
            const I iw = ow * g.SW - g.PL + j * g.DW;
            const T* ws = w + ((i * g.KW + j) * g.C) * O + o;
            if (row_in && iw >= 0 && iw < g.W) {
                const T* xs = x + ((n * g.H + ih) * g.W + iw) * g.C;
                for (I c = 0; c < g.C; ++c) acc += xs[c] * ws[c * O];
            } else {
                for (I c = 0; c < g.C; ++c) acc += T(0) * ws[c * O];  // padding: 0 * w (NaN for Inf or NaN w)
            }
        }
    }
    y[e] = relu ? (acc < T(0) ? T(0) : acc) : acc;
}

inline index_t direct_forward_count(const ConvGeom& g, index_t O) {
    return checked_mul(g.out_pixels(), O, "conv2d output size");
}
inline bool direct_forward_index32(const ConvGeom& g, index_t O) {
    return fits32(g, {direct_forward_count(g, O), checked_mul(g.patch_size(), O, "filter size")});
}

// The weight gradient's partials: block (32 channels, kDirectLanes pixel lanes) per (channel tile,
// tap k, chunk of chunk_pixels pixels); tap k == K is the bias gradient (x_tap = 1).
constexpr int kDirectLanes = 8;
constexpr index_t kDirectChunkPixels = 2048;

// The number of pixel chunks for P pixels (at most 65535, the limit of gridDim.z) and their size.
struct DirectChunks {
    index_t pixels, count;
    explicit DirectChunks(index_t P) {
        pixels = kDirectChunkPixels;
        if ((P + pixels - 1) / pixels > 65535) pixels = (P + 65534) / 65535;
        count = (P + pixels - 1) / pixels;
    }
};

// Thread (o, lane) of the block for tap k and chunk `chunk`: the sum in T of x_tap(k) * dy[p, o]
// over its pixels p = p0 + lane, p0 + lane + kDirectLanes, ... of the chunk (0 if o >= O).
template <class T, class I>
CNNKIT_HD T direct_weights_lane_sum(const T* __restrict__ x, const T* __restrict__ dy, const Geom<I>& g, I O,
                                    I chunk_pixels, I k, I chunk, I o, I lane) {
    const I K = g.KH * g.KW * g.C, P = g.N * g.OH * g.OW;
    const I p0 = chunk * chunk_pixels, p1 = p0 + chunk_pixels < P ? p0 + chunk_pixels : P;
    I i = 0, j = 0, c = 0;
    if (k < K) c = k % g.C, j = (k / g.C) % g.KW, i = k / (g.C * g.KW);
    T acc = T(0);
    if (o >= O) return acc;
    for (I p = p0 + lane; p < p1; p += kDirectLanes) {
        const T d = dy[p * O + o];
        if (k == K) {
            acc += d;
            continue;
        }
        const I ow = p % g.OW, nr = p / g.OW, oh = nr % g.OH, n = nr / g.OH;
        const I ih = oh * g.SH - g.PT + i * g.DH, iw = ow * g.SW - g.PL + j * g.DW;
        const bool in = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
        acc += (in ? x[((n * g.H + ih) * g.W + iw) * g.C + c] : T(0)) * d;  // padding: 0 * dy
    }
    return acc;
}

inline bool direct_weights_index32(const ConvGeom& g, index_t O) {
    return fits32(g, {checked_mul(g.out_pixels(), O, "dy size"), checked_mul(g.patch_size() + 1, O, "dw size")});
}

// dw (or db, past K * O) element e: the chunk partials part[(chunk * (K + 1)) * O + e] added in
// chunk order, in double.
template <class T>
CNNKIT_HD void direct_weights_finish_element(const double* __restrict__ part, T* __restrict__ dw,
                                             T* __restrict__ db, index_t K, index_t O, index_t nchunks, index_t e) {
    double s = 0.0;
    for (index_t ch = 0; ch < nchunks; ++ch) s += part[ch * (K + 1) * O + e];
    if (e < K * O)
        dw[e] = static_cast<T>(s);
    else
        db[e - K * O] = static_cast<T>(s);
}

}  // namespace cuda
}  // namespace cnnkit
