// im2col.cuh: the per-element work of the im2col and col2im kernels (im2col.cu), __host__ __device__
// so that the host test module cnnkit._cuda_host runs exactly this arithmetic on the CPU, one call
// per element of the same grid, and the tests compare it with the NumPy reference (tests marked
// cuda_host). Also the choice of index type for each launch, which the test module shares.
#pragma once

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda {

// col[e], entry e of the im2col rows [row0, ...): row r = (n, oh, ow), column k = (i, j, c); 0 for
// padding.
template <class T, class I>
CNNKIT_HD void im2col_element(const T* __restrict__ x, T* __restrict__ col, const Geom<I>& g, I row0, I e) {
    const I K = g.KH * g.KW * g.C, ohw = g.OH * g.OW;
    const I rr = e / K, k = e - rr * K;
    const I r = row0 + rr;
    const I n = r / ohw, p = r - n * ohw, oh = p / g.OW, ow = p - oh * g.OW;
    const I c = k % g.C, ij = k / g.C, j = ij % g.KW, i = ij / g.KW;
    const I ih = oh * g.SH - g.PT + i * g.DH, iw = ow * g.SW - g.PL + j * g.DW;
    T v = T(0);
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = x[((n * g.H + ih) * g.W + iw) * g.C + c];
    col[e] = v;
}

// dx element e of the images [n0, ...), flat (n - n0, h, w, c), += the dcol entries of rows
// [row0, row1) whose window read it, summed onto its value in (i, j) tap order as the CPU's AxisTaps.
template <class T, class I>
CNNKIT_HD void col2im_element(const T* __restrict__ dcol, T* __restrict__ dx, const Geom<I>& g, I row0, I row1, I n0,
                              I e) {
    const I K = g.KH * g.KW * g.C, ohw = g.OH * g.OW;
    const I c = e % g.C, pix = e / g.C;
    const I w = pix % g.W, nh = pix / g.W, h = nh % g.H, n = n0 + nh / g.H;
    const I out = ((n * g.H + h) * g.W + w) * g.C + c;
    T acc = dx[out];
    for (I i = 0; i < g.KH; ++i) {
        const I t = h + g.PT - i * g.DH;
        if (t < 0 || t % g.SH != 0 || t / g.SH >= g.OH) continue;
        const I oh = t / g.SH;
        for (I j = 0; j < g.KW; ++j) {
            const I u = w + g.PL - j * g.DW;
            if (u < 0 || u % g.SW != 0 || u / g.SW >= g.OW) continue;
            const I r = n * ohw + oh * g.OW + u / g.SW;
            if (r < row0 || r >= row1) continue;
            acc += dcol[(r - row0) * K + (i * g.KW + j) * g.C + c];
        }
    }
    dx[out] = acc;
}

// im2col of rows [row0, row1): count elements, 32-bit indices when the geometry and sizes allow.
inline index_t im2col_count(const ConvGeom& g, index_t row0, index_t row1) {
    return checked_mul(row1 - row0, g.patch_size(), "im2col size");
}
inline bool im2col_index32(const ConvGeom& g, index_t row0, index_t row1) {
    return fits32(g, {im2col_count(g, row0, row1)});
}

// col2im_accumulate of rows [row0, row1) (row0 < row1): the images n0..n1 it touches, one element
// per value of theirs.
struct Col2imRange {
    index_t n0, count;
};
inline Col2imRange col2im_range(const ConvGeom& g, index_t row0, index_t row1) {
    const index_t ohw = g.OH * g.OW;
    const index_t n0 = row0 / ohw, n1 = (row1 - 1) / ohw;  // images touched, inclusive
    return {n0, checked_mul(n1 - n0 + 1, g.H * g.W * g.C, "col2im size")};
}
inline bool col2im_index32(const ConvGeom& g, index_t row0, index_t row1) {
    return fits32(g, {checked_mul(row1 - row0, g.patch_size(), "col2im size")});
}

}  // namespace cuda
}  // namespace cnnkit
