// im2col.cu: the CUDA twin of csrc/cpu/im2col.cpp (the GEMMs run in CuPy/cuBLAS, see
// cnnkit/ops/convolution.py). Same matrix layout: im2col row r = (n, oh, ow), columns (kh, kw, c).
// im2col: one thread per matrix entry (consecutive threads write consecutive columns, reading
// consecutive channels). col2im_accumulate: a GATHER, one thread per input element (n, h, w, c)
// of the images the row range touches, summing in (kh, kw) order the entries whose window read it,
// onto the value already in dx: no atomics, deterministic, and the same additions in the same
// order as the CPU twin. Grid-stride loops; index arithmetic in 32 bits when the geometry and every
// index fit, else 64 (index.cuh). The per-element work is in im2col.cuh, which the host test module
// cnnkit._cuda_host also runs (tests/test_cuda_host.py).
#include "cuda/check.cuh"
#include "cuda/im2col.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {

// The per-element work is in im2col.cuh (shared with the host test module cnnkit._cuda_host).
template <class T, class I>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, const Geom<I> g, I row0, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) im2col_element(x, col, g, row0, e);
}

template <class T, class I>
__global__ void col2im_kernel(const T* __restrict__ dcol, T* __restrict__ dx, const Geom<I> g, I row0, I row1,
                              I n0, I count) {
    CNNKIT_GRID_LOOP_AS(I, e, count) col2im_element(dcol, dx, g, row0, row1, n0, e);
}

}  // namespace

template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, bool /*parallel*/, Stream stream) {
    const index_t count = im2col_count(g, row0, row1);
    if (count == 0) return;
    with_index_type(im2col_index32(g, row0, row1), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("im2col_kernel", (im2col_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), x,
                      col, Geom<I>(g), I(row0), I(count));
    });
}

template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, Stream stream) {
    if (row1 <= row0) return;
    const Col2imRange r = col2im_range(g, row0, row1);
    with_index_type(col2im_index32(g, row0, row1), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("col2im_kernel", (col2im_kernel<T, I>), grid_for(r.count), kThreads, 0, as_stream(stream),
                      dcol, dx, Geom<I>(g), I(row0), I(row1), I(r.n0), I(r.count));
    });
}

CNNKIT_INSTANTIATE_IM2COL(float)
CNNKIT_INSTANTIATE_IM2COL(double)

}  // namespace cuda
}  // namespace cnnkit
