// im2col.cu: the CUDA twin of csrc/cpu/im2col.cpp (the GEMMs run in CuPy/cuBLAS, see
// cnnkit/ops/conv.py). Same matrix layout: im2col row r = (n, oh, ow), columns (kh, kw, c).
// im2col: one thread per matrix entry (consecutive threads write consecutive columns, reading
// consecutive channels). col2im_accumulate: a GATHER, one thread per input element (n, h, w, c)
// of the images the row range touches, summing in (kh, kw) order the entries whose window read it,
// onto the value already in dx: no atomics, deterministic, and the same additions in the same
// order as the CPU twin. bias_add: elementwise. bias_grad: column sums in double, deterministic:
// fixed chunks of rows give per-chunk partials (stream-ordered scratch), added in chunk order.
// Grid-stride loops; index arithmetic in 32 bits when every index fits, else 64 (check.cuh).
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

template <class T, class I>
__global__ void bias_add_kernel(T* __restrict__ y, const T* __restrict__ b, I count, I O, bool relu) {
    CNNKIT_GRID_LOOP_AS(I, e, count) {
        const T v = y[e] + b[e % O];
        y[e] = relu ? (v < T(0) ? T(0) : v) : v;  // NaN passes, as the CPU's relu
    }
}

// Per-chunk column sums of a (rows, O) matrix: block (32, 8) covers 32 columns of one chunk of
// kChunkRows rows; thread (tx, ty) sums rows ty, ty + 8, ... of the chunk in double, then the 8 lane
// sums are added in lane order. part[chunk * O + o]. grid (ceil(O / 32), nchunks).
constexpr index_t kChunkRows = 1024;
constexpr int kLanesY = 8;

template <class T>
__global__ void column_partials_kernel(const T* __restrict__ a, double* __restrict__ part, index_t rows,
                                       index_t O, index_t chunk_rows) {
    __shared__ double sh[kLanesY][32];
    const index_t o = static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x;
    const index_t r0 = static_cast<index_t>(blockIdx.y) * chunk_rows;
    const index_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
    double s = 0.0;
    if (o < O)
        for (index_t r = r0 + threadIdx.y; r < r1; r += kLanesY) s += static_cast<double>(a[r * O + o]);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < O) {
        double t = 0.0;
        for (int l = 0; l < kLanesY; ++l) t += sh[l][threadIdx.x];
        part[static_cast<index_t>(blockIdx.y) * O + o] = t;
    }
}

template <class T>
__global__ void column_finish_kernel(const double* __restrict__ part, T* __restrict__ out, index_t nchunks,
                                     index_t O) {
    CNNKIT_GRID_LOOP(o, O) {
        double s = 0.0;
        for (index_t k = 0; k < nchunks; ++k) s += part[k * O + o];
        out[o] = static_cast<T>(s);
    }
}

// Chunks for a column reduction over `rows`: at least kChunkRows rows each, at most 65535 chunks
// (gridDim.y). Depends on the shape only.
inline index_t chunk_rows_for(index_t rows) {
    index_t cr = kChunkRows;
    if ((rows + cr - 1) / cr > 65535) cr = (rows + 65534) / 65535;
    return cr;
}

template <class T>
void column_sums(const T* a, T* out, index_t rows, index_t O, cudaStream_t s, const char* name) {
    if (O == 0) return;
    if (rows == 0) {
        check_cuda(cudaMemsetAsync(out, 0, sizeof(T) * O, s), name);
        return;
    }
    const index_t cr = chunk_rows_for(rows), nchunks = (rows + cr - 1) / cr;
    require((O + 31) / 32 <= 2147483647, std::string(name) + ": too many columns");
    Scratch part(sizeof(double) * checked_mul(nchunks, O, name), s, name);
    const dim3 grid(static_cast<unsigned>((O + 31) / 32), static_cast<unsigned>(nchunks));
    CNNKIT_LAUNCH("column_partials_kernel", column_partials_kernel<T>, grid, dim3(32, kLanesY), 0, s, a,
                  part.as<double>(), rows, O, cr);
    CNNKIT_LAUNCH("column_finish_kernel", column_finish_kernel<T>, grid_for(O), kThreads, 0, s,
                  part.as<double>(), out, nchunks, O);
}

}  // namespace

template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, void* stream) {
    const index_t count = checked_mul(row1 - row0, g.patch_size(), "im2col size");
    if (count == 0) return;
    with_index_type(fits32({count, g.in_size(), g.out_pixels()}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("im2col_kernel", (im2col_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), x,
                      col, Geom<I>(g), I(row0), I(count));
    });
}

template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, void* stream) {
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

template <class T>
void bias_add(T* y, const T* b, index_t rows, index_t O, bool relu, void* stream) {
    const index_t count = checked_mul(rows, O, "bias_add size");
    if (count == 0) return;
    with_index_type(fits32({count}), [&](auto tag) {
        using I = decltype(tag);
        CNNKIT_LAUNCH("bias_add_kernel", (bias_add_kernel<T, I>), grid_for(count), kThreads, 0, as_stream(stream), y,
                      b, I(count), I(O), relu);
    });
}

template <class T>
void bias_grad(const T* dy, T* db, index_t rows, index_t O, void* stream) {
    column_sums(dy, db, rows, O, as_stream(stream), "bias_grad");
}

#define CNNKIT_INSTANTIATE(T)                                                                           \
    template void im2col<T>(const T*, T*, const ConvGeom&, index_t, index_t, void*);                    \
    template void col2im_accumulate<T>(const T*, T*, const ConvGeom&, index_t, index_t, void*);         \
    template void bias_add<T>(T*, const T*, index_t, index_t, bool, void*);                             \
    template void bias_grad<T>(const T*, T*, index_t, index_t, void*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cuda
}  // namespace cnnkit
