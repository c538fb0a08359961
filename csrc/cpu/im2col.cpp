// im2col.cpp: the native half of conv2d (the GEMMs run in NumPy/OpenBLAS, see cnnkit/ops/convolution.py).
// im2col copies the windows of an NHWC input into rows of a (rows, KH*KW*C) matrix, columns ordered
// (kh, kw, c), so each window row is KW runs of C contiguous floats; col2im_accumulate is its adjoint
// written as a GATHER: one thread owns each input pixel and sums the column entries that read it in a
// fixed (kh, kw) order, so dx is deterministic without atomics. Both work on a range of im2col rows
// [row0, row1) so the caller can bound its workspace. OpenMP over rows / pixels; int64 indexing.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"

namespace cnnkit {
namespace cpu {

// Fill col (row1 - row0, KH*KW*C) with the im2col rows [row0, row1) of x (N, H, W, C); padding -> 0.
// parallel=false runs on the calling thread: conv2d does so between OpenBLAS GEMMs, where this
// memory-bound copy gains less from a second OpenMP thread than that thread costs the GEMM that
// follows (it spin-waits on a core OpenBLAS needs; measured ~15-30% on 2 cores).
template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, bool parallel, Stream) {
    const index_t K = g.patch_size(), C = g.C, ohw = g.OH * g.OW;
    const index_t run = g.KW * g.C;  // one kernel row of a window
#pragma omp parallel for schedule(static) if (parallel)
    for (index_t r = row0; r < row1; ++r) {
        const index_t n = r / ohw, oh = (r % ohw) / g.OW, ow = r % g.OW;
        const index_t ih0 = oh * g.SH - g.PT, iw0 = ow * g.SW - g.PL;
        T* dst = col + (r - row0) * K;
        // Whole kernel row inside the image and undilated along W: one contiguous copy.
        const bool row_inside = g.DW == 1 && iw0 >= 0 && iw0 + g.KW <= g.W;
        for (index_t i = 0; i < g.KH; ++i, dst += run) {
            const index_t ih = ih0 + i * g.DH;
            if (ih < 0 || ih >= g.H) {
                std::fill(dst, dst + run, T(0));
                continue;
            }
            const T* src_row = x + ((n * g.H + ih) * g.W) * C;
            if (row_inside) {
                std::memcpy(dst, src_row + iw0 * C, sizeof(T) * run);
                continue;
            }
            for (index_t j = 0; j < g.KW; ++j) {
                const index_t iw = iw0 + j * g.DW;
                T* d = dst + j * C;
                if (iw < 0 || iw >= g.W)
                    std::fill(d, d + C, T(0));
                else
                    std::memcpy(d, src_row + iw * C, sizeof(T) * C);
            }
        }
    }
}

// The taps of one spatial axis: for each input coordinate h, the (kernel offset i, output
// coordinate oh) pairs with oh*S - P + i*D == h and 0 <= oh < O, in increasing i. Precomputing them
// keeps divisions out of col2im's inner loops and visits only the taps that exist (about K/S).
namespace {
struct AxisTaps {
    std::vector<index_t> count, k, out;  // count[h]; k/out[h * K + t] for t < count[h]
    AxisTaps(index_t size, index_t K, index_t S, index_t D, index_t P, index_t O)
        : count(size, 0), k(size * K), out(size * K) {
        for (index_t h = 0; h < size; ++h) {
            for (index_t i = 0; i < K; ++i) {
                const index_t t = h + P - i * D;
                if (t < 0 || t % S != 0 || t / S >= O) continue;
                k[h * K + count[h]] = i;
                out[h * K + count[h]] = t / S;
                ++count[h];
            }
        }
    }
};
}  // namespace

// dx (N, H, W, C) += the adjoint of im2col applied to dcol, the rows [row0, row1) of the full
// (N*OH*OW, KH*KW*C) column-gradient matrix, stored as a (row1 - row0, K) block. Gather: each input
// pixel of the images those rows touch adds, in (kh, kw) order, the entries of the rows in range
// whose window read it. Scratch: the two AxisTaps tables, (H + W) * (KH + KW) integers.
template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, Stream) {
    if (row1 <= row0) return;
    const AxisTaps th(g.H, g.KH, g.SH, g.DH, g.PT, g.OH), tw(g.W, g.KW, g.SW, g.DW, g.PL, g.OW);
    const index_t K = g.patch_size(), C = g.C, ohw = g.OH * g.OW;
    const index_t n0 = row0 / ohw, n1 = (row1 - 1) / ohw;  // images touched, inclusive
    const index_t span = (n1 - n0 + 1) * g.H;              // (image, input row) pairs
#pragma omp parallel for schedule(static)
    for (index_t p = 0; p < span; ++p) {
        const index_t n = n0 + p / g.H, h = p % g.H;
        // Output rows of image n inside [row0, row1); skip input rows no such window reads.
        const index_t lo = std::max(row0, n * ohw) - n * ohw, hi = std::min(row1, (n + 1) * ohw) - n * ohw;
        const index_t oh_lo = lo / g.OW, oh_hi = (hi - 1) / g.OW;
        if (h < oh_lo * g.SH - g.PT || h > oh_hi * g.SH - g.PT + (g.KH - 1) * g.DH) continue;
        const index_t nh = th.count[h];
        const index_t* hk = &th.k[h * g.KH];
        const index_t* hoh = &th.out[h * g.KH];
        for (index_t w = 0; w < g.W; ++w) {
            T* dst = dx + ((n * g.H + h) * g.W + w) * C;
            const index_t nw = tw.count[w];
            const index_t* wk = &tw.k[w * g.KW];
            const index_t* wow = &tw.out[w * g.KW];
            for (index_t a = 0; a < nh; ++a) {
                const index_t rbase = n * ohw + hoh[a] * g.OW;
                const index_t cbase = hk[a] * g.KW * C;
                for (index_t bb = 0; bb < nw; ++bb) {
                    const index_t r = rbase + wow[bb];
                    if (r < row0 || r >= row1) continue;
                    const T* src = dcol + (r - row0) * K + cbase + wk[bb] * C;
                    for (index_t c = 0; c < C; ++c) dst[c] += src[c];
                }
            }
        }
    }
}

CNNKIT_INSTANTIATE_IM2COL(float)
CNNKIT_INSTANTIATE_IM2COL(double)

}  // namespace cpu
}  // namespace cnnkit
