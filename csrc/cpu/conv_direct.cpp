// conv_direct.cpp: direct 2-D convolution for small filters (K*O small, K = KH*KW*C: a first layer
// on 1-3 channels), where im2col + GEMM spends its time on the im2col copy and on a GEMM too thin to
// block well. NHWC input, HWIO kernel seen as (K, O), any stride, dilation and padding. The forward
// keeps a tile of 4 output pixels x 16 floats (8 doubles) of output channels in registers and
// streams the K taps, reading x in place through a per-tap offset table; bias and optionally ReLU
// are applied before the one store. The weight gradient dw[k, o] = sum over pixels of x_tap(k) *
// dy[o] keeps up to 4 taps x 16 channels in registers over fixed blocks of output rows (and db
// along with the first taps); block partials are added in block order in double, so dw and db are
// deterministic and independent of the thread count (no atomics). A padded input is read through
// per-output-row bands: the rows a window row reads, copied with their zero padding.
// OpenMP over output rows (forward) / row blocks (gradient); int64 indexing.
// Scratch: the forward copies w and b zero-padded to whole tiles ((K, O rounded up) values) and
// holds one band per thread; the gradient holds one (K + 1, O) partial per row block and, with
// padding, the bands of one block per thread. The CUDA twin is cuda/conv_direct.cu.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/simd.h"

#ifdef CNNKIT_OPENMP
#include <omp.h>
#endif

namespace cnnkit {
namespace cpu {
namespace {

// Scratch is allocated before a parallel region, one slice per thread: an allocation that fails
// then throws where the binding turns it into MemoryError, not inside the region (which would
// call std::terminate).
int region_threads() {
#ifdef CNNKIT_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
// calloc, not std::vector: a failed request comes back as NULL and becomes AllocError here, also
// under AddressSanitizer (whose operator new aborts the process on a request it cannot serve
// instead of throwing std::bad_alloc). Zero-filled, as the bands' padding needs.
template <class T>
class Scratch {
public:
    Scratch(index_t count, const char* what)
        : data_(static_cast<T*>(std::calloc(count > 0 ? static_cast<size_t>(count) : 1, sizeof(T)))) {
        if (!data_)
            throw AllocError(std::string("cannot allocate ") + std::to_string(count) + " x " +
                             std::to_string(sizeof(T)) + " bytes of scratch for " + what);
    }
    ~Scratch() { std::free(data_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    T* data() { return data_; }

private:
    T* data_;
};
int thread_index() {
#ifdef CNNKIT_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// GNU vectors of 32 bytes (8 floats, 4 doubles), which each target_clones copy lowers to its own
// registers (one AVX2/AVX-512 register, two SSE2 ones); scalar * vector broadcasts. A register tile
// row is two of them: 16 floats or 8 doubles of output channels. (A single 64-byte vector would
// suit AVX-512 but GCC keeps such vectors in memory on AVX2.) Other compilers get scalar lanes.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // the vector helpers are inlined: no ABI to keep
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
    typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
    typedef double type __attribute__((vector_size(32)));
};
template <class T>
using Vec = typename VecOf<T>::type;
template <class T>
constexpr index_t kLanes = 32 / static_cast<index_t>(sizeof(T));
#else
template <class T>
using Vec = T;
template <class T>
constexpr index_t kLanes = 1;
#endif
template <class T>
constexpr index_t kTileWidth = 2 * kLanes<T>;

// Loads/stores of the first `lanes` (0..kLanes) lanes; missing lanes read as 0.
template <class T>
CNNKIT_INLINE Vec<T> load(const T* p, index_t lanes = kLanes<T>) {
    Vec<T> v{};
    std::memcpy(&v, p, sizeof(T) * lanes);
    return v;
}
template <class T>
CNNKIT_INLINE void store(T* p, const Vec<T>& v, index_t lanes = kLanes<T>) {
    std::memcpy(p, &v, sizeof(T) * lanes);
}
// Lanes of half h (0, 1) of a tile row with `valid` channels.
template <class T>
CNNKIT_INLINE index_t half_lanes(index_t valid, int h) {
    return std::max<index_t>(0, std::min<index_t>(kLanes<T>, valid - h * kLanes<T>));
}

// Forward: pixels per register tile. 4 pixels x 2 vectors = 8 accumulators: as many independent
// FMA chains as hide the FMA latency (4 cycles, 2 per cycle) on AVX2, with registers to spare.
constexpr int kPixels = 4;
// Weight gradient: at most this many taps per register tile (8 accumulators again). K is split into
// tiles of equal size (9 = 3 + 3 + 3, not 4 + 4 + 1: a 1-tap tile would leave the FMA unit waiting).
constexpr index_t kTaps = 4;
// Weight gradient: output pixels per block (rounded to whole output rows). Each block's partial is
// summed in T over at most this many pixels; the blocks are then added in double.
constexpr index_t kBlockPixels = 1024;

// Where the windows of each output row r = n*OH + oh read their input: straight from x when the
// geometry has no padding, else from a band of the eff_h input rows the windows cover, copied with
// their zero padding (rows above or below the image are all zeros). Either way the window of
// output pixel ow starts at row(r) + ow * SW * C, input rows are ld elements apart, and tap k sits
// at offset[k] from the window's start.
template <class T>
struct RowSource {
    const T* x;
    const ConvGeom& g;
    bool padded;
    index_t eff_h, ld;
    std::vector<index_t> offset;  // K entries, (kh, kw, c) order

    RowSource(const T* x_, const ConvGeom& g_)
        : x(x_), g(g_), padded(g.PT || g.PB || g.PL || g.PR), eff_h((g.KH - 1) * g.DH + 1),
          ld((g.W + (padded ? g.PL + g.PR : 0)) * g.C) {
        offset.reserve(static_cast<size_t>(g.patch_size()));
        for (index_t i = 0; i < g.KH; ++i)
            for (index_t j = 0; j < g.KW; ++j)
                for (index_t c = 0; c < g.C; ++c) offset.push_back(i * g.DH * ld + (j * g.DW) * g.C + c);
    }
    index_t band_size() const { return padded ? eff_h * ld : 0; }
    // The start of output row r's first window; with padding, its band is written to `band`.
    const T* row(index_t r, T* band) const {
        const index_t n = r / g.OH, oh = r % g.OH;
        if (!padded) return x + (n * g.H + oh * g.SH) * ld;
        const index_t row_len = g.W * g.C, left = g.PL * g.C;
        for (index_t i = 0; i < eff_h; ++i) {
            T* dst = band + i * ld;
            const index_t ih = oh * g.SH - g.PT + i;
            if (ih < 0 || ih >= g.H) {
                std::fill(dst, dst + ld, T(0));
                continue;
            }
            std::fill(dst, dst + left, T(0));
            std::copy(x + (n * g.H + ih) * row_len, x + (n * g.H + ih + 1) * row_len, dst + left);
            std::fill(dst + left + row_len, dst + ld, T(0));
        }
        return band;
    }
};

// y[p, 0:valid] = act(b + sum_k x(p)[off[k]] * w[k, :]) for P pixels p whose windows start at
// xs + p * xstep; w and b are zero-padded to whole tiles (ldw apart per tap).
template <class T, int P>
CNNKIT_INLINE void forward_tile(const T* xs, index_t xstep, const index_t* off, index_t K, const T* w,
                         index_t ldw, const T* b, T* y, index_t O, index_t valid, bool relu) {
    constexpr index_t L = kLanes<T>;
    Vec<T> acc[P][2];
    const Vec<T> b0 = load(b), b1 = load(b + L);
    for (int p = 0; p < P; ++p) acc[p][0] = b0, acc[p][1] = b1;
    for (index_t k = 0; k < K; ++k) {
        const Vec<T> w0 = load(w + k * ldw), w1 = load(w + k * ldw + L);
        const index_t ok = off[k];
        for (int p = 0; p < P; ++p) {
            const T xv = xs[p * xstep + ok];
            acc[p][0] += xv * w0;
            acc[p][1] += xv * w1;
        }
    }
    const Vec<T> zero{};
    for (int p = 0; p < P; ++p) {
        for (int h = 0; h < 2; ++h) {
            const Vec<T> v = relu ? (acc[p][h] < zero ? zero : acc[p][h]) : acc[p][h];  // as relu_of
            if (valid == kTileWidth<T>)
                store(y + p * O + h * L, v);
            else
                store(y + p * O + h * L, v, half_lanes<T>(valid, h));
        }
    }
}

// One output row (n, oh): OW pixels in tiles of kPixels, the last tile shorter.
template <class T>
CNNKIT_SIMD_CLONES void forward_row(const T* xrow, const index_t* off, const T* wpad, const T* bpad,
                                    T* yrow, const ConvGeom& g, index_t O, index_t ldw, bool relu) {
    constexpr index_t L = kTileWidth<T>;
    const index_t K = g.patch_size(), xstep = g.SW * g.C;
    for (index_t ow = 0; ow < g.OW; ow += kPixels) {
        const T* xs = xrow + ow * xstep;
        T* ys = yrow + ow * O;
        const index_t np = std::min<index_t>(kPixels, g.OW - ow);
        for (index_t o0 = 0; o0 < O; o0 += L) {
            const index_t valid = std::min<index_t>(L, O - o0);
            const T* w = wpad + o0;
            const T* b = bpad + o0;
            switch (np) {
                case 4: forward_tile<T, 4>(xs, xstep, off, K, w, ldw, b, ys + o0, O, valid, relu); break;
                case 3: forward_tile<T, 3>(xs, xstep, off, K, w, ldw, b, ys + o0, O, valid, relu); break;
                case 2: forward_tile<T, 2>(xs, xstep, off, K, w, ldw, b, ys + o0, O, valid, relu); break;
                default: forward_tile<T, 1>(xs, xstep, off, K, w, ldw, b, ys + o0, O, valid, relu); break;
            }
        }
    }
}

// part[kk, 0:valid] = sum over the output rows [r0, r1) and their pixels of x(p)[off[kk]] * dy[p, :],
// for KT taps and the tile of dy's channels starting where dy points; with SUM, also
// sum[0:valid] = the sums of those dy channels. FULL: the tile has all kTileWidth channels (else
// `valid` of them).
template <class T, int KT, bool FULL, bool SUM>
CNNKIT_INLINE void weight_tile(const T* const* rows, const T* dy, const ConvGeom& g, index_t O,
                               index_t r0, index_t r1, const index_t* off, index_t valid, T* part,
                               index_t ldp, T* sum) {
    constexpr index_t L = kLanes<T>;
    const index_t xstep = g.SW * g.C;
    const index_t lanes0 = half_lanes<T>(valid, 0), lanes1 = half_lanes<T>(valid, 1);
    Vec<T> acc[KT][2] = {};
    Vec<T> s0{}, s1{};
    for (index_t r = r0; r < r1; ++r) {
        const T* xs = rows[r - r0];
        const T* d = dy + r * g.OW * O;
        for (index_t ow = 0; ow < g.OW; ++ow, xs += xstep, d += O) {
            const Vec<T> d0 = FULL ? load(d) : load(d, lanes0);
            const Vec<T> d1 = FULL ? load(d + L) : load(d + L, lanes1);
            for (int kk = 0; kk < KT; ++kk) {
                const T xv = xs[off[kk]];
                acc[kk][0] += xv * d0;
                acc[kk][1] += xv * d1;
            }
            if (SUM) s0 += d0, s1 += d1;
        }
    }
    for (int kk = 0; kk < KT; ++kk) {
        store(part + kk * ldp, acc[kk][0], lanes0);
        store(part + kk * ldp + L, acc[kk][1], lanes1);
    }
    if (SUM) store(sum, s0, lanes0), store(sum + L, s1, lanes1);
}

template <class T, bool FULL, bool SUM>
CNNKIT_INLINE void weight_tile_any(index_t kt, const T* const* x, const T* dy, const ConvGeom& g, index_t O,
                                   index_t r0, index_t r1, const index_t* off, index_t valid, T* part,
                                   T* sum) {
    switch (kt) {
        case 4: weight_tile<T, 4, FULL, SUM>(x, dy, g, O, r0, r1, off, valid, part, O, sum); break;
        case 3: weight_tile<T, 3, FULL, SUM>(x, dy, g, O, r0, r1, off, valid, part, O, sum); break;
        case 2: weight_tile<T, 2, FULL, SUM>(x, dy, g, O, r0, r1, off, valid, part, O, sum); break;
        default: weight_tile<T, 1, FULL, SUM>(x, dy, g, O, r0, r1, off, valid, part, O, sum); break;
    }
}

// One block of output rows [r0, r1) whose windows start at x[r - r0]: part (K + 1, O) = its dw
// rows, then its column sums of dy (taken along with the first tile of taps).
template <class T>
CNNKIT_SIMD_CLONES void weight_block(const T* const* x, const T* dy, const ConvGeom& g, index_t O, index_t r0,
                                     index_t r1, const index_t* off, T* part) {
    constexpr index_t L = kTileWidth<T>;
    const index_t K = g.patch_size();
    const index_t ktiles = (K + kTaps - 1) / kTaps, kstep = (K + ktiles - 1) / ktiles;
    for (index_t o0 = 0; o0 < O; o0 += L) {
        const index_t valid = std::min<index_t>(L, O - o0);
        T* sum = part + K * O + o0;
        for (index_t k0 = 0; k0 < K; k0 += kstep) {
            const index_t kt = std::min<index_t>(kstep, K - k0);
            T* p = part + k0 * O + o0;
            const T* d = dy + o0;
            if (valid == L && k0 == 0)
                weight_tile_any<T, true, true>(kt, x, d, g, O, r0, r1, off + k0, valid, p, sum);
            else if (valid == L)
                weight_tile_any<T, true, false>(kt, x, d, g, O, r0, r1, off + k0, valid, p, sum);
            else if (k0 == 0)
                weight_tile_any<T, false, true>(kt, x, d, g, O, r0, r1, off + k0, valid, p, sum);
            else
                weight_tile_any<T, false, false>(kt, x, d, g, O, r0, r1, off + k0, valid, p, sum);
        }
    }
}

}  // namespace

// y (N, OH, OW, O) = act(conv(x, w) + b); b may be null.
template <class T>
void conv2d_direct_forward(const T* x, const T* w, const T* b, T* y, const ConvGeom& g, index_t O, bool relu,
                           Stream) {
    constexpr index_t L = kTileWidth<T>;
    const index_t K = g.patch_size(), ldw = (O + L - 1) / L * L;
    const RowSource<T> src(x, g);
    std::vector<T> wpad(static_cast<size_t>(K * ldw), T(0)), bpad(static_cast<size_t>(ldw), T(0));
    for (index_t k = 0; k < K; ++k) std::copy(w + k * O, w + (k + 1) * O, wpad.begin() + k * ldw);
    if (b) std::copy(b, b + O, bpad.begin());
    const int threads = region_threads();
    Scratch<T> bands(checked_mul(threads, src.band_size(), "direct conv bands"), "the padded input rows");
#pragma omp parallel num_threads(threads)
    {
        T* band = bands.data() + thread_index() * src.band_size();
#pragma omp for schedule(static)
        for (index_t r = 0; r < g.N * g.OH; ++r) {
            forward_row<T>(src.row(r, band), src.offset.data(), wpad.data(), bpad.data(),
                           y + r * g.OW * O, g, O, ldw, relu);
        }
    }
}

// dw (K, O) = sum over pixels of x_tap * dy, db (O) = column sums of dy (db may be null). Blocks
// of whole output rows (about kBlockPixels pixels, independent of the thread count) are summed
// separately, then added in block order in double.
template <class T>
void conv2d_direct_backward_weights(const T* x, const T* dy, T* dw, T* db, const ConvGeom& g, index_t O,
                                    Stream) {
    const index_t K = g.patch_size(), rows = g.N * g.OH;
    const index_t block_rows = std::max<index_t>(1, kBlockPixels / g.OW);
    const index_t nblocks = (rows + block_rows - 1) / block_rows;
    const index_t stride = (K + 1) * O;
    const RowSource<T> src(x, g);
    std::vector<T> part(static_cast<size_t>(nblocks * stride));
    const int threads = region_threads();
    const index_t per_thread = checked_mul(block_rows, src.band_size(), "direct conv bands");
    Scratch<T> all_bands(checked_mul(threads, per_thread, "direct conv bands"), "the padded input rows");
    std::vector<const T*> all_starts(static_cast<size_t>(threads * block_rows));
#pragma omp parallel num_threads(threads)
    {
        const T** row_start = all_starts.data() + thread_index() * block_rows;
        T* bands = all_bands.data() + thread_index() * per_thread;
#pragma omp for schedule(static)
        for (index_t bi = 0; bi < nblocks; ++bi) {
            const index_t r0 = bi * block_rows, r1 = std::min(rows, r0 + block_rows);
            for (index_t r = r0; r < r1; ++r)
                row_start[r - r0] = src.row(r, bands + (r - r0) * src.band_size());
            weight_block<T>(row_start, dy, g, O, r0, r1, src.offset.data(), part.data() + bi * stride);
        }
    }
    const index_t outputs = K * O + (db ? O : 0);
#pragma omp parallel for schedule(static)
    for (index_t j = 0; j < outputs; ++j) {
        double s = 0.0;
        for (index_t bi = 0; bi < nblocks; ++bi) s += static_cast<double>(part[bi * stride + j]);
        if (j < K * O)
            dw[j] = static_cast<T>(s);
        else
            db[j - K * O] = static_cast<T>(s);
    }
}

CNNKIT_INSTANTIATE_CONV_DIRECT(float)
CNNKIT_INSTANTIATE_CONV_DIRECT(double)

}  // namespace cpu
}  // namespace cnnkit
