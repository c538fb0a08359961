// common.h: what every cnnkit kernel shares, on the CPU (csrc/cpu) and the GPU (csrc/cuda).
// 64-bit size arithmetic with overflow checks, the convolution/pooling window geometry (NHWC input,
// one window per output pixel, explicit top/bottom/left/right padding), and the counter-based RNG
// that dropout and stochastic pooling draw from. The RNG is a pure function of (seed, index), so a
// result never depends on thread count or scheduling and ops.reference can reproduce it in NumPy.
// Nothing here depends on Python: errors are C++ exceptions that the bindings turn into Python ones
// (std::invalid_argument -> ValueError).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define CNNKIT_HD __host__ __device__ __forceinline__
#else
#define CNNKIT_HD inline
#endif

namespace cnnkit {

using index_t = std::int64_t;

// A scratch allocation that failed, with the size asked for; the bindings raise it as MemoryError.
struct AllocError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

// a * b, refusing to wrap around.
inline index_t checked_mul(index_t a, index_t b, const char* what) {
    require(a >= 0 && b >= 0, std::string(what) + ": negative size");
    if (a != 0 && b > std::numeric_limits<index_t>::max() / a)
        throw std::length_error(std::string(what) + ": size overflows 64 bits");
    return a * b;
}

// Window geometry for convolution and pooling over an NHWC input (N, H, W, C).
// Output pixel (oh, ow) reads input rows oh*SH - PT + i*DH for i in [0, KH), likewise for columns;
// rows or columns outside [0, H) x [0, W) are padding.
struct ConvGeom {
    index_t N, H, W, C;      // input
    index_t KH, KW;          // window (kernel or pool) size
    index_t SH, SW;          // strides
    index_t DH, DW;          // dilation
    index_t PT, PB, PL, PR;  // padding: top, bottom, left, right
    index_t OH, OW;          // output size, derived

    CNNKIT_HD index_t out_pixels() const { return N * OH * OW; }    // rows of the im2col matrix
    CNNKIT_HD index_t patch_size() const { return KH * KW * C; }    // columns of the im2col matrix
    CNNKIT_HD index_t in_size() const { return N * H * W * C; }
};

// Build and validate a geometry; every size is checked so kernels can index without further tests.
inline ConvGeom make_geom(index_t N, index_t H, index_t W, index_t C, index_t KH, index_t KW,
                          index_t SH, index_t SW, index_t DH, index_t DW, index_t PT, index_t PB,
                          index_t PL, index_t PR) {
    require(N >= 0 && H > 0 && W > 0 && C > 0,
            "input shape must have N >= 0 and H, W, C > 0, got (" + std::to_string(N) + ", " +
                std::to_string(H) + ", " + std::to_string(W) + ", " + std::to_string(C) + ")");
    require(KH > 0 && KW > 0, "kernel/pool size must be positive");
    require(SH > 0 && SW > 0, "strides must be positive");
    require(DH > 0 && DW > 0, "dilation must be positive");
    require(PT >= 0 && PB >= 0 && PL >= 0 && PR >= 0, "padding must be non-negative");
    // Every extent at most 2^62, so that the sums below (and the kernels' index arithmetic) cannot
    // overflow 64 bits.
    constexpr index_t max_extent = index_t(1) << 62;
    for (index_t v : {H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR})
        require(v <= max_extent, "window geometry: an extent exceeds 2^62");
    const auto padded = [](index_t n, index_t a, index_t b) {  // <= 3 * 2^62: no unsigned wrap
        return static_cast<std::uint64_t>(n) + static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b);
    };
    require(padded(H, PT, PB) <= std::uint64_t(max_extent) && padded(W, PL, PR) <= std::uint64_t(max_extent),
            "window geometry: the padded input exceeds 2^62");
    ConvGeom g{N, H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR, 0, 0};
    const index_t eff_h = checked_mul(KH - 1, DH, "dilated kernel height") + 1;
    const index_t eff_w = checked_mul(KW - 1, DW, "dilated kernel width") + 1;
    const index_t span_h = H + PT + PB, span_w = W + PL + PR;
    require(span_h >= eff_h && span_w >= eff_w,
            "window (" + std::to_string(eff_h) + ", " + std::to_string(eff_w) +
                ") is larger than the padded input (" + std::to_string(span_h) + ", " +
                std::to_string(span_w) + "): the output would be empty");
    g.OH = (span_h - eff_h) / SH + 1;
    g.OW = (span_w - eff_w) / SW + 1;
    // A stride along an axis with one output, or a dilation along an axis with a one-tap window,
    // selects nothing: set it to 1. Then every stride and dilation is at most the padded extent, and
    // with the padded image checked below, products such as SW * C or SH * W * C fit in 64 bits
    // (UBSan found 4 * 2^62 in the direct kernel's column step for a stride of 2^62).
    if (g.OH == 1) g.SH = 1;
    if (g.OW == 1) g.SW = 1;
    if (KH == 1) g.DH = 1;
    if (KW == 1) g.DW = 1;
    checked_mul(checked_mul(span_h, span_w, "padded image"), C, "padded image");
    // Make sure every product a kernel may form fits in 64 bits.
    checked_mul(checked_mul(checked_mul(N, g.OH, "output size"), g.OW, "output size"),
                checked_mul(checked_mul(KH, KW, "patch size"), C, "patch size"), "im2col size");
    checked_mul(checked_mul(checked_mul(N, H, "input size"), W, "input size"), C, "input size");
    return g;
}

// Pooling windows (no dilation), shared by csrc/cpu/pool.cpp and csrc/cuda/pool.cu; templated on
// the integer type so that GPU kernels can do this arithmetic in 32 bits when the sizes allow.
// Clipped window [lo, hi) along one axis for output position o: padding cells are skipped.
template <class I>
struct RangeT {
    I lo, hi;
};
using Range = RangeT<index_t>;

template <class I>
CNNKIT_HD RangeT<I> window_range(I o, I stride, I pad, I k, I size) {
    const I start = o * stride - pad;
    return {start > 0 ? start : I(0), start + k < size ? start + k : size};
}

// Outputs [lo, hi) whose window covers input position i along one axis (empty when lo >= hi).
template <class I>
CNNKIT_HD RangeT<I> covering_range(I i, I stride, I pad, I k, I out) {
    const I first = i + pad - k;  // windows starting at or before this one miss i
    const I lo = first < 0 ? I(0) : first / stride + 1;
    const I last = (i + pad) / stride + 1;
    return {lo, last < out ? last : out};
}

// Counter-based RNG: uniform double in [0, 1) as a pure function of (seed, index).
// splitmix64 finalizer (Steele, Lea, Flood 2014) over a Weyl sequence keyed by the mixed seed.
// ops.reference reimplements this in NumPy uint64 arithmetic; keep the two in step.
CNNKIT_HD std::uint64_t mix64(std::uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z;
}

CNNKIT_HD double uniform01(std::uint64_t seed, std::uint64_t index) {
    const std::uint64_t key = mix64(seed + 0x9E3779B97F4A7C15ULL);
    const std::uint64_t z = mix64(key + 0x9E3779B97F4A7C15ULL * (index + 1));
    return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 53 bits / 2^53
}

// The same draw split in two, for kernels that hash many indices under one seed: the key once,
// then the 53 random bits of each index. uniform01(seed, i) == rng_bits(rng_key(seed), i) * 2^-53.
CNNKIT_HD std::uint64_t rng_key(std::uint64_t seed) { return mix64(seed + 0x9E3779B97F4A7C15ULL); }
CNNKIT_HD std::uint64_t rng_bits(std::uint64_t key, std::uint64_t index) {
    return mix64(key + 0x9E3779B97F4A7C15ULL * (index + 1)) >> 11;
}

// The activation kernels of both devices (unary_forward ... rows_backward in kernels.inc), one entry
// point per shape of arguments and an op among these.
enum class Unary { relu, sigmoid, tanh };                                       // y = f(x)
enum class Binary { relu, sigmoid, sigmoid_from_output, tanh, tanh_from_output };  // dx = f'(v) dy
enum class Alpha { leaky_relu, elu };                                           // with a scalar alpha
enum class Rows { softmax, log_softmax };                                       // over each row
enum class RowsBack { softmax, softmax_from_output, log_softmax, log_softmax_from_output };

// The optimizers' fused update kernels (sgd_update, adam_update, rmsprop_update in kernels.inc): the
// scalars of one step, worked out on the host in double (cnnkit.ops.optimizer: the learning rate,
// Adam's bias correction folded into alpha, 1 - beta) and rounded to the variable's dtype by the
// kernel, as NumPy rounds a Python float operand. keep = 1 - weight_decay * learning_rate scales the
// variable before the update (decoupled weight decay; 1 for none, which leaves it exact).
struct SgdStep {
    double learning_rate, momentum, keep;
    bool nesterov;
};
struct AdamStep {
    double alpha, one_minus_beta_1, one_minus_beta_2, epsilon, keep;  // alpha = lr sqrt(1 - b2^t) / (1 - b1^t)
};
struct RmspropStep {
    double learning_rate, rho, one_minus_rho, momentum, epsilon, keep;
};

// Inverted dropout keeps element i iff uniform01(seed, i) >= rate. uniform01 is an exact multiple of
// 2^-53, so that is the integer test rng_bits(key, i) >= dropout_threshold(rate), bit-identical to
// comparing the doubles; the CPU and the GPU kernels both use it, so their masks agree bit for bit.
inline std::uint64_t dropout_threshold(double rate) {
    const double t = rate * 9007199254740992.0;  // 2^53
    const std::uint64_t f = static_cast<std::uint64_t>(t);
    return static_cast<double>(f) < t ? f + 1 : f;  // ceil, without <cmath>
}

}  // namespace cnnkit
