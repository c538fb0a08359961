// im2col.cu: the CUDA twin of csrc/cpu/im2col.cpp (the GEMMs run in CuPy/cuBLAS, see
// cnnkit/ops/conv.py). Same matrix layout: im2col row r = (n, oh, ow), columns (kh, kw, c).
// im2col: one thread per matrix entry (consecutive threads write consecutive columns, reading
// consecutive channels). col2im_accumulate: a GATHER, one thread per input element (n, h, w, c)
// of the images the row range touches, summing in (kh, kw) order the entries whose window read it,
// onto the value already in dx: no atomics, deterministic, and the same additions in the same
// order as the CPU twin. Grid-stride loops; index arithmetic in 32 bits when every index fits, else 64 (check.cuh).
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

template <class T, class I>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, const Geom<I> g, I row0, I count) {
    const I K = g.KH * g.KW * g.C, ohw = g.OH * g.OW;
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const I rr = e / K, k = e - rr * K;
        const I r = row0 + rr;
        const I n = r / ohw, p = r - n * ohw, oh = p / g.OW, ow = p - oh * g.OW;
        const I c = k % g.C, ij = k / g.C, j = ij % g.KW, i = ij / g.KW;
        const I ih = oh * g.SH - g.PT + i * g.DH, iw = ow * g.SW - g.PL + j * g.DW;
        T v = T(0);
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) v = x[((n * g.H + ih) * g.W + iw) * g.C + c];
        col[e] = v;
    }
}

// dx element e of the images [n0, ...): taps i (then j) in increasing order, as the CPU's AxisTaps.
template <class T, class I>
__global__ void col2im_kernel(const T* __restrict__ dcol, T* __restrict__ dx, const Geom<I> g, I row0, I row1,
                              I n0, I count) {
    const I K = g.KH * g.KW * g.C, ohw = g.OH * g.OW;
    CNNKIT_GRID_LOOP_AS(I, e, count) {
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
}

}  // namespace

template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, bool /*parallel*/, Stream stream) {
    const index_t count = checked_mul(row1 - row0, g.patch_size(), "im2col size");
    if (count == 0) return;
    with_index_type(fits32({count, g.in_size(), g.out_pixels()}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("im2col_kernel", (im2col_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), x,
                      col, Geom<I>(g), I(row0), I(count));
    });
}

template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, Stream stream) {
    if (row1 <= row0) return;
    const index_t ohw = g.OH * g.OW;
    const index_t n0 = row0 / ohw, n1 = (row1 - 1) / ohw;  // images touched, inclusive
    const index_t count = checked_mul(n1 - n0 + 1, g.H * g.W * g.C, "col2im size");
    const index_t dcol_size = checked_mul(row1 - row0, g.patch_size(), "col2im size");
    with_index_type(fits32({g.in_size(), dcol_size, g.out_pixels()}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("col2im_kernel", (col2im_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), dcol,
                      dx, Geom<I>(g), I(row0), I(row1), I(n0), I(count));
    });
}

CNNKIT_INSTANTIATE_IM2COL(float)
CNNKIT_INSTANTIATE_IM2COL(double)

}  // namespace cuda
}  // namespace cnnkit
