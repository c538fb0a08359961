// pool.cpp: max, average, global and stochastic pooling over NHWC activations, forward and backward.
// C is contiguous, so every kernel walks the window cells and keeps the channel loop innermost, where
// it vectorizes. Forwards parallelize over output rows (n, oh); backwards are GATHERS parallel over
// input rows (n, h): each input pixel sums the windows covering it in a fixed order (oh, then ow), so
// results are deterministic and need no atomics. Max and stochastic pooling record the chosen cell as
// a flat in-image index h*W + w (int32 or int64), which their backward routes the gradient to.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/simd.h"

namespace cnnkit {
namespace cpu {

namespace {

// One step of max pooling over the C channels of a cell (x) at in-image index k: take x[c] when it
// is larger than the running max y[c], or when it is NaN while y[c] is not (!(v <= b) && b == b), so
// NaN wins and ties keep the first cell; the argmax (when kept) follows. Branch-free to vectorize.
template <class T, class I>
inline void max_update(const T* x, I k, T* y, I* argmax, index_t C) {
    if (argmax) {
        for (index_t c = 0; c < C; ++c) {
            const T v = x[c], b = y[c];
            const bool take = !(v <= b) && (b == b);
            y[c] = take ? v : b;
            argmax[c] = take ? k : argmax[c];
        }
    } else {
        for (index_t c = 0; c < C; ++c) {
            const T v = x[c], b = y[c];
            y[c] = (!(v <= b) && (b == b)) ? v : b;
        }
    }
}

// Range, window_range and covering_range live in common.h (shared with csrc/cuda/pool.cu).

// Stochastic-pooling weights of one cell's channels: r = max(x, 0), NaN -> 0. Kept in T and in a
// loop of its own: GCC if-converts a same-type select, but not one fused with the float -> double
// conversion (it branches instead, which mispredicts on random signs).
template <class T>
inline void positive_part(const T* xc, T* r, index_t C) {
    for (index_t c = 0; c < C; ++c) {
        const T v = xc[c];
        r[c] = v > T(0) ? v : T(0);
    }
}

// The windows covering each input column: W ranges of ow, computed once per call.
inline std::vector<Range> covering_columns(const ConvGeom& g) {
    std::vector<Range> cols(static_cast<size_t>(g.W));
    for (index_t w = 0; w < g.W; ++w) cols[w] = covering_range(w, g.SW, g.PL, g.KW, g.OW);
    return cols;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Max pooling. NaN is the maximum (the first NaN in scan order wins); ties go to the first cell in
// scan order (window rows outer, columns inner); padded cells never win. A window with no input cell
// (refused by cnnkit.ops) gives -inf and index -1. argmax may be null (forward without indices).

template <class T, class I>
CNNKIT_SIMD_CLONES void max_pool2d_forward(const T* x, T* y, I* argmax, const ConvGeom& g, Stream) {
    const index_t C = g.C;
#pragma omp parallel
    {
        // Without y (a backward recomputing only the argmax), the running maximum lives in scratch.
        std::vector<T> best(y ? 0 : static_cast<size_t>(C));
#pragma omp for schedule(static)
        for (index_t row = 0; row < g.N * g.OH; ++row) {
            const index_t n = row / g.OH, oh = row % g.OH;
            const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            const T* xn = x + n * g.H * g.W * C;
            for (index_t ow = 0; ow < g.OW; ++ow) {
                const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                const index_t o = (row * g.OW + ow) * C;
                T* yo = y ? y + o : best.data();
                I* ao = argmax ? argmax + o : nullptr;
                if (rh.lo >= rh.hi || rw.lo >= rw.hi) {
                    for (index_t c = 0; c < C; ++c) yo[c] = -std::numeric_limits<T>::infinity();
                    if (ao)
                        for (index_t c = 0; c < C; ++c) ao[c] = I(-1);
                    continue;
                }
                // The first cell seeds the running maximum, so an all -inf window still has an argmax.
                const T* first = xn + (rh.lo * g.W + rw.lo) * C;
                for (index_t c = 0; c < C; ++c) yo[c] = first[c];
                if (ao) {
                    const I k0 = static_cast<I>(rh.lo * g.W + rw.lo);
                    for (index_t c = 0; c < C; ++c) ao[c] = k0;
                }
                for (index_t h = rh.lo; h < rh.hi; ++h) {
                    for (index_t w = (h == rh.lo ? rw.lo + 1 : rw.lo); w < rw.hi; ++w) {
                        max_update(xn + (h * g.W + w) * C, static_cast<I>(h * g.W + w), yo, ao, C);
                    }
                }
            }
        }
    }
}

// Gather: dx at (n, h, w, c) is the sum, over the windows covering (h, w) in (oh, ow) order, of
// dy[o, c] where argmax[o, c] == h*W + w. Also the backward of training-mode stochastic pooling.
// The first covering window assigns and the others add, so dx is written once per pass and pixels
// no window covers are zeroed. Scratch: the W column ranges, computed once per call.
template <class T, class I>
CNNKIT_SIMD_CLONES void max_pool2d_backward(const T* dy, const I* argmax, T* dx, const ConvGeom& g, Stream) {
    const index_t C = g.C;
    const std::vector<Range> cols = covering_columns(g);
#pragma omp parallel for schedule(static)
    for (index_t row = 0; row < g.N * g.H; ++row) {
        const index_t n = row / g.H, h = row % g.H;
        const Range oh_r = covering_range(h, g.SH, g.PT, g.KH, g.OH);
        for (index_t w = 0; w < g.W; ++w) {
            const Range ow_r = cols[w];
            T* d = dx + (row * g.W + w) * C;
            if (oh_r.lo >= oh_r.hi || ow_r.lo >= ow_r.hi) {
                for (index_t c = 0; c < C; ++c) d[c] = T(0);
                continue;
            }
            const I k = static_cast<I>(h * g.W + w);
            bool first = true;
            for (index_t oh = oh_r.lo; oh < oh_r.hi; ++oh) {
                for (index_t ow = ow_r.lo; ow < ow_r.hi; ++ow) {
                    const index_t o = ((n * g.OH + oh) * g.OW + ow) * C;
                    const T* dyo = dy + o;
                    const I* ao = argmax + o;
                    // dyo[c] is loaded unconditionally so that the select vectorizes.
                    if (first) {
                        for (index_t c = 0; c < C; ++c) {
                            const T v = dyo[c];
                            d[c] = ao[c] == k ? v : T(0);
                        }
                        first = false;
                    } else {
                        for (index_t c = 0; c < C; ++c) {
                            const T v = dyo[c];
                            d[c] += ao[c] == k ? v : T(0);
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Average pooling; padded cells are not counted (Keras/TensorFlow). An empty window gives 0.

template <class T>
CNNKIT_SIMD_CLONES void avg_pool2d_forward(const T* x, T* y, const ConvGeom& g, Stream) {
    const index_t C = g.C;
#pragma omp parallel for schedule(static)
    for (index_t row = 0; row < g.N * g.OH; ++row) {
        const index_t n = row / g.OH, oh = row % g.OH;
        const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
        const T* xn = x + n * g.H * g.W * C;
        for (index_t ow = 0; ow < g.OW; ++ow) {
            const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
            T* yo = y + (row * g.OW + ow) * C;
            if (rh.lo >= rh.hi || rw.lo >= rw.hi) {
                for (index_t c = 0; c < C; ++c) yo[c] = T(0);
                continue;
            }
            // The first cell seeds the sum (one pass less than starting from zero).
            const T* first = xn + (rh.lo * g.W + rw.lo) * C;
            for (index_t c = 0; c < C; ++c) yo[c] = first[c];
            for (index_t h = rh.lo; h < rh.hi; ++h)
                for (index_t w = (h == rh.lo ? rw.lo + 1 : rw.lo); w < rw.hi; ++w) {
                    const T* xc = xn + (h * g.W + w) * C;
                    for (index_t c = 0; c < C; ++c) yo[c] += xc[c];
                }
            const T inv = T(1) / static_cast<T>((rh.hi - rh.lo) * (rw.hi - rw.lo));
            for (index_t c = 0; c < C; ++c) yo[c] *= inv;
        }
    }
}

// Gather: dx at (n, h, w, c) sums dy[o, c] / count[o] over the windows o covering (h, w), the first
// assigning. Scratch: the W column ranges, computed once per call.
template <class T>
CNNKIT_SIMD_CLONES void avg_pool2d_backward(const T* dy, T* dx, const ConvGeom& g, Stream) {
    const index_t C = g.C;
    const std::vector<Range> cols = covering_columns(g);
#pragma omp parallel for schedule(static)
    for (index_t row = 0; row < g.N * g.H; ++row) {
        const index_t n = row / g.H, h = row % g.H;
        const Range oh_r = covering_range(h, g.SH, g.PT, g.KH, g.OH);
        for (index_t w = 0; w < g.W; ++w) {
            const Range ow_r = cols[w];
            T* d = dx + (row * g.W + w) * C;
            if (oh_r.lo >= oh_r.hi || ow_r.lo >= ow_r.hi) {
                for (index_t c = 0; c < C; ++c) d[c] = T(0);
                continue;
            }
            bool first = true;
            for (index_t oh = oh_r.lo; oh < oh_r.hi; ++oh) {
                const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
                for (index_t ow = ow_r.lo; ow < ow_r.hi; ++ow) {
                    const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                    const T inv = T(1) / static_cast<T>((rh.hi - rh.lo) * (rw.hi - rw.lo));
                    const T* dyo = dy + ((n * g.OH + oh) * g.OW + ow) * C;
                    if (first) {
                        for (index_t c = 0; c < C; ++c) d[c] = dyo[c] * inv;
                        first = false;
                    } else {
                        for (index_t c = 0; c < C; ++c) d[c] += dyo[c] * inv;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Global pooling over H x W: y is (N, C), argmax (N, C) holds h*W + w. Parallel over the batch.

template <class T>
CNNKIT_SIMD_CLONES void global_avg_pool2d_forward(const T* x, T* y, index_t N, index_t HW, index_t C, Stream) {
#pragma omp parallel
    {
        // Scratch per thread: float partial sums over a block of pixels feed a double total, so a
        // float32 mean over a large image keeps its accuracy while the hot loop stays in T.
        std::vector<T> part(static_cast<size_t>(C));
        std::vector<double> total(static_cast<size_t>(C));
        constexpr index_t block = 64;
#pragma omp for schedule(static)
        for (index_t n = 0; n < N; ++n) {
            const T* xn = x + n * HW * C;
            std::fill(total.begin(), total.end(), 0.0);
            for (index_t p0 = 0; p0 < HW; p0 += block) {
                const index_t p1 = std::min(HW, p0 + block);
                T* ps = part.data();
                for (index_t c = 0; c < C; ++c) ps[c] = T(0);
                for (index_t p = p0; p < p1; ++p) {
                    const T* xc = xn + p * C;
                    for (index_t c = 0; c < C; ++c) ps[c] += xc[c];
                }
                for (index_t c = 0; c < C; ++c) total[c] += static_cast<double>(ps[c]);
            }
            for (index_t c = 0; c < C; ++c) y[n * C + c] = static_cast<T>(total[c] / static_cast<double>(HW));
        }
    }
}

template <class T>
CNNKIT_SIMD_CLONES void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, Stream) {
    const T inv = T(1) / static_cast<T>(HW);
#pragma omp parallel for schedule(static)
    for (index_t np = 0; np < N * HW; ++np) {
        const T* d = dy + (np / HW) * C;
        T* out = dx + np * C;
        for (index_t c = 0; c < C; ++c) out[c] = d[c] * inv;
    }
}

template <class T, class I>
CNNKIT_SIMD_CLONES void global_max_pool2d_forward(const T* x, T* y, I* argmax, index_t N, index_t HW, index_t C,
                                                  Stream) {
#pragma omp parallel for schedule(static)
    for (index_t n = 0; n < N; ++n) {
        const T* xn = x + n * HW * C;
        T* yo = y + n * C;
        I* ao = argmax ? argmax + n * C : nullptr;
        for (index_t c = 0; c < C; ++c) yo[c] = xn[c];
        if (ao)
            for (index_t c = 0; c < C; ++c) ao[c] = I(0);
        for (index_t p = 1; p < HW; ++p) {
            max_update(xn + p * C, static_cast<I>(p), yo, ao, C);
        }
    }
}

template <class T, class I>
CNNKIT_SIMD_CLONES void global_max_pool2d_backward(const T* dy, const I* argmax, T* dx, index_t N, index_t HW,
                                                   index_t C, Stream) {
#pragma omp parallel for schedule(static)
    for (index_t np = 0; np < N * HW; ++np) {
        const index_t n = np / HW;
        const I k = static_cast<I>(np % HW);
        const T* d = dy + n * C;
        const I* a = argmax + n * C;
        T* out = dx + np * C;
        for (index_t c = 0; c < C; ++c) out[c] = a[c] == k ? d[c] : T(0);
    }
}

// ---------------------------------------------------------------------------------------------
// Stochastic pooling (Zeiler & Fergus 2013). Weights a = max(x, 0) (NaN -> 0) over the window's
// input cells in scan order, S = their sequential sum in double.
// Training: with u = uniform01(seed, flat output index), pick the first cell whose running sum
// exceeds u*S (the last cell with a > 0 if rounding leaves none); y = x there. S == 0 (no positive
// cell) gives y = 0, a constant: index -1, so no gradient flows back (as for a window that covers
// only padding). index records the pick (h*W + w) for the backward, max_pool2d_backward.
// Inference: y = sum(a^2) / S, 0 when S == 0.
// Each window is walked cell by cell with the channels innermost (vectorized); every channel still
// sums its own cells in scan order, so the sums match the reference bit for bit.
// Scratch: per thread, five arrays of C values for one window.

template <class T, class I>
CNNKIT_SIMD_CLONES void stochastic_pool2d_forward(const T* x, T* y, I* index, const ConvGeom& g,
                                                  bool training, std::uint64_t seed, Stream) {
    const index_t C = g.C;
#pragma omp parallel
    {
        std::vector<T> weights(C);
        std::vector<double> sum(C), acc(C), target(C);
        std::vector<index_t> chosen(C), last_positive(C);
        T* r = weights.data();
        double* s = sum.data();
        double* q = acc.data();  // sum of squares, then (training) the running sum
        double* t = target.data();
        index_t* pick = chosen.data();
        index_t* last = last_positive.data();
#pragma omp for schedule(static)
        for (index_t row = 0; row < g.N * g.OH; ++row) {
            const index_t n = row / g.OH, oh = row % g.OH;
            const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
            const T* xn = x + n * g.H * g.W * C;
            for (index_t ow = 0; ow < g.OW; ++ow) {
                const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                const index_t o = (row * g.OW + ow) * C;
                if (rh.lo >= rh.hi || rw.lo >= rw.hi) {
                    for (index_t c = 0; c < C; ++c) y[o + c] = T(0);
                    if (index)
                        for (index_t c = 0; c < C; ++c) index[o + c] = I(-1);
                    continue;
                }
                for (index_t c = 0; c < C; ++c) s[c] = q[c] = 0.0;
                for (index_t h = rh.lo; h < rh.hi; ++h)
                    for (index_t w = rw.lo; w < rw.hi; ++w) {
                        positive_part(xn + (h * g.W + w) * C, r, C);
                        for (index_t c = 0; c < C; ++c) {
                            const double a = static_cast<double>(r[c]);
                            s[c] += a;
                            q[c] += a * a;
                        }
                    }
                if (!training) {
                    for (index_t c = 0; c < C; ++c) {
                        const double mean = q[c] / s[c];  // unconditional (0/0 discarded): vectorizes
                        y[o + c] = static_cast<T>(s[c] > 0.0 ? mean : 0.0);
                    }
                    continue;
                }
                for (index_t c = 0; c < C; ++c) {
                    t[c] = uniform01(seed, static_cast<std::uint64_t>(o + c)) * s[c];
                    q[c] = 0.0;
                    pick[c] = -1;
                    last[c] = -1;
                }
                for (index_t h = rh.lo; h < rh.hi; ++h)
                    for (index_t w = rw.lo; w < rw.hi; ++w) {
                        const index_t k = h * g.W + w;
                        positive_part(xn + k * C, r, C);
                        for (index_t c = 0; c < C; ++c) {
                            const double a = static_cast<double>(r[c]);
                            last[c] = a > 0.0 ? k : last[c];
                            q[c] += a;
                            pick[c] = (pick[c] < 0 && q[c] > t[c]) ? k : pick[c];
                        }
                    }
                for (index_t c = 0; c < C; ++c) {
                    const index_t k = s[c] == 0.0 ? -1 : (pick[c] >= 0 ? pick[c] : last[c]);
                    y[o + c] = k < 0 ? T(0) : xn[k * C + c];
                    if (index) index[o + c] = static_cast<I>(k);
                }
            }
        }
    }
}

// Inference-mode backward: for x_j > 0, dx_j = sum over windows o covering j of
// dy_o * (2 a_j - y_o) / S_o. Parallel over images: a first pass stores 1/S_o (0 when S_o == 0) and
// y_o of the image's windows in double, the second gathers in (oh, ow) order and zeroes pixels with
// x_j <= 0 at the end (so every window with S_o == 0, whose cells all have a == 0, drops out).
// Scratch: per thread, the (OH, OW, 2, C) window statistics of one image and two arrays of C values.
template <class T>
CNNKIT_SIMD_CLONES void stochastic_pool2d_backward_inference(const T* dy, const T* x, T* dx, const ConvGeom& g,
                                                             Stream) {
    const index_t C = g.C;
    const std::vector<Range> cols = covering_columns(g);
#pragma omp parallel
    {
        std::vector<T> weights(C);
        std::vector<double> acc(C);  // one pixel's gradient in double
        std::vector<double> window_stats(static_cast<size_t>(g.OH * g.OW * 2 * C));
        T* r = weights.data();
        double* ac = acc.data();
        double* stats = window_stats.data();
#pragma omp for schedule(static)
        for (index_t n = 0; n < g.N; ++n) {
            const T* xn = x + n * g.H * g.W * C;
            for (index_t oh = 0; oh < g.OH; ++oh) {
                const Range rh = window_range(oh, g.SH, g.PT, g.KH, g.H);
                for (index_t ow = 0; ow < g.OW; ++ow) {
                    const Range rw = window_range(ow, g.SW, g.PL, g.KW, g.W);
                    double* s = stats + (oh * g.OW + ow) * 2 * C;
                    double* q = s + C;
                    for (index_t c = 0; c < C; ++c) s[c] = q[c] = 0.0;
                    for (index_t h = rh.lo; h < rh.hi; ++h)
                        for (index_t w = rw.lo; w < rw.hi; ++w) {
                            positive_part(xn + (h * g.W + w) * C, r, C);
                            for (index_t c = 0; c < C; ++c) {
                                const double a = static_cast<double>(r[c]);
                                s[c] += a;
                                q[c] += a * a;
                            }
                        }
                    for (index_t c = 0; c < C; ++c) {  // s becomes 1/S, q becomes y
                        const bool positive = s[c] > 0.0;
                        q[c] = positive ? q[c] / s[c] : 0.0;
                        s[c] = positive ? 1.0 / s[c] : 0.0;
                    }
                }
            }
            for (index_t h = 0; h < g.H; ++h) {
                const Range oh_r = covering_range(h, g.SH, g.PT, g.KH, g.OH);
                for (index_t w = 0; w < g.W; ++w) {
                    const Range ow_r = cols[w];
                    const index_t pixel = ((n * g.H + h) * g.W + w) * C;
                    positive_part(x + pixel, r, C);
                    for (index_t c = 0; c < C; ++c) ac[c] = 0.0;
                    for (index_t oh = oh_r.lo; oh < oh_r.hi; ++oh)
                        for (index_t ow = ow_r.lo; ow < ow_r.hi; ++ow) {
                            const T* dyo = dy + ((n * g.OH + oh) * g.OW + ow) * C;
                            const double* inv_s = stats + (oh * g.OW + ow) * 2 * C;
                            const double* yo = inv_s + C;
                            for (index_t c = 0; c < C; ++c)
                                ac[c] += static_cast<double>(dyo[c]) * (2.0 * static_cast<double>(r[c]) - yo[c]) * inv_s[c];
                        }
                    // Two loops: GCC branches (and mispredicts) on a select fused with the conversion.
                    T* d = dx + pixel;
                    for (index_t c = 0; c < C; ++c) d[c] = static_cast<T>(ac[c]);
                    for (index_t c = 0; c < C; ++c) d[c] = r[c] > T(0) ? d[c] : T(0);
                }
            }
        }
    }
}

CNNKIT_INSTANTIATE_POOL(float)
CNNKIT_INSTANTIATE_POOL(double)

}  // namespace cpu
}  // namespace cnnkit
