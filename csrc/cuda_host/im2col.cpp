// im2col.cpp (cnnkit._cuda_host, test-only): csrc/cuda/im2col.cu's launchers on the CPU, one call
// of the kernels' per-element functions (cuda/im2col.cuh) per element of their grids.
#include "cuda/im2col.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {

template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, bool /*parallel*/, Stream stream) {
    const index_t count = cuda::im2col_count(g, row0, row1);
    with_index_type(stream, cuda::im2col_index32(g, row0, row1), "im2col", [&](auto tag) {
        using I = decltype(tag);
        const cuda::Geom<I> gi(g);
        for (I e = 0; e < I(count); ++e) cuda::im2col_element(x, col, gi, I(row0), e);
    });
}

template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, Stream stream) {
    with_index_type(stream, cuda::col2im_index32(g, row0, row1), "col2im_accumulate", [&](auto tag) {
        using I = decltype(tag);
        if (row1 <= row0) return;
        const cuda::Col2imRange r = cuda::col2im_range(g, row0, row1);
        const cuda::Geom<I> gi(g);
        for (I e = 0; e < I(r.count); ++e) cuda::col2im_element(dcol, dx, gi, I(row0), I(row1), I(r.n0), e);
    });
}

CNNKIT_INSTANTIATE_IM2COL(float)
CNNKIT_INSTANTIATE_IM2COL(double)

}  // namespace cuda_host
}  // namespace cnnkit
