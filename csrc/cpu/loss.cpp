// loss.cpp: softmax cross-entropy over logits (N, K), with integer class ids (N,) or target
// probabilities (N, K). Rows run in parallel (OpenMP over N); each row takes its max, sums
// exp(logit - max) in double and forms log-sum-exp = max + log(sum), stable for logits of any
// magnitude. Per-row losses go to a float64 scratch (N,) that the caller allocates and are averaged
// serially in row order, so the mean does not depend on the thread count. The float32 exp is a
// branch-free polynomial the compiler vectorizes (std::exp does not vectorize without -ffast-math).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "bind_util.h"

namespace cnnkit {

namespace {

// exp(x) for x <= 0 in float: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes expf
// polynomial (about 1 ulp); 2^n is assembled in the exponent bits. Below -87.3 the result is 0.
inline float exp_nonpositive(float x) {
    const float xc = x < -87.33f ? -87.33f : x;
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const float t = xc * 1.44269504f + shifter;
    const float n = t - shifter;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    std::int32_t ti;
    std::memcpy(&ti, &t, sizeof ti);
    const std::int32_t bits = (ti - 0x4B400000 + 127) << 23;  // n + bias in the exponent field
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < -87.33f ? 0.0f : p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// One row: returns the row loss (when want_loss) and writes grad_scale * d(loss)/d(logits) into g
// (when g is non-null). Exactly one of label (>= 0, validated) and probs (non-null) describes the target.
template <class T>
double xent_row(const T* x, index_t K, std::int64_t label, const T* probs, double grad_scale, bool want_loss,
                T* g) {
    T m = x[0];
#pragma omp simd reduction(max : m)
    for (index_t k = 0; k < K; ++k) m = x[k] > m ? x[k] : m;
    double s = 0.0;
    if (g) {
#pragma omp simd reduction(+ : s)
        for (index_t k = 0; k < K; ++k) {
            const T e = exp_nonpositive(static_cast<T>(x[k] - m));
            g[k] = e;
            s += static_cast<double>(e);
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (index_t k = 0; k < K; ++k) s += static_cast<double>(exp_nonpositive(static_cast<T>(x[k] - m)));
    }
    const double lse = static_cast<double>(m) + std::log(s);
    double loss = 0.0;
    if (probs) {
        double psum = 0.0;
        if (want_loss) {
#pragma omp simd reduction(+ : loss, psum)
            for (index_t k = 0; k < K; ++k) {
                const double p = static_cast<double>(probs[k]);
                psum += p;
                loss += p * (lse - static_cast<double>(x[k]));
            }
        } else {
#pragma omp simd reduction(+ : psum)
            for (index_t k = 0; k < K; ++k) psum += static_cast<double>(probs[k]);
        }
        if (g) {
            // d/dx_k of -sum_j p_j log softmax_j = sum(p) * softmax_k - p_k
            const T a = static_cast<T>(grad_scale * psum / s), b = static_cast<T>(grad_scale);
#pragma omp simd
            for (index_t k = 0; k < K; ++k) g[k] = a * g[k] - b * probs[k];
        }
    } else {
        if (want_loss) loss = lse - static_cast<double>(x[label]);
        if (g) {
            const T a = static_cast<T>(grad_scale / s);
#pragma omp simd
            for (index_t k = 0; k < K; ++k) g[k] = a * g[k];
            g[label] -= static_cast<T>(grad_scale);
        }
    }
    return loss;
}

// Shared driver: rows in parallel; row_loss / loss / dlogits may each be null.
template <class T>
void xent_rows(const T* logits, const std::int64_t* labels, const T* probs, index_t N, index_t K,
               double grad_scale, double* row_loss, T* loss, T* dlogits) {
    bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
    for (index_t i = 0; i < N; ++i) {
        std::int64_t label = -1;
        if (labels) {
            label = labels[i];
            if (label < 0 || label >= K) {  // never index with it; reported below
                bad = true;
                continue;
            }
        }
        const double l = xent_row(logits + i * K, K, label, probs ? probs + i * K : nullptr, grad_scale,
                                  row_loss != nullptr, dlogits ? dlogits + i * K : nullptr);
        if (row_loss) row_loss[i] = l;
    }
    if (bad) {
        for (index_t i = 0; i < N; ++i)
            require(labels[i] >= 0 && labels[i] < K,
                    "labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) + " is out of range [0, " +
                        std::to_string(K) + ")");
    }
    if (loss) {
        double total = 0.0;
        for (index_t i = 0; i < N; ++i) total += row_loss[i];
        *loss = static_cast<T>(N > 0 ? total / static_cast<double>(N) : std::numeric_limits<double>::quiet_NaN());
    }
}

}  // namespace

// Mean loss over the rows into *loss; row_loss (N,) is scratch. labels (N,) or probs (N, K): one is null.
template <class T>
void softmax_cross_entropy_forward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                   index_t K, double* row_loss, T* loss) {
    xent_rows(logits, labels, probs, N, K, 0.0, row_loss, loss, static_cast<T*>(nullptr));
}

// dlogits = dloss / N * (sum(p) * softmax(logits) - p), p the one-hot row or the target probabilities.
template <class T>
void softmax_cross_entropy_backward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                    index_t K, double dloss, T* dlogits) {
    const double scale = N > 0 ? dloss / static_cast<double>(N) : 0.0;
    xent_rows(logits, labels, probs, N, K, scale, nullptr, static_cast<T*>(nullptr), dlogits);
}

// Both in one pass over the logits (gradient for dloss = 1).
template <class T>
void softmax_cross_entropy_fused(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                 index_t K, double* row_loss, T* loss, T* dlogits) {
    const double scale = N > 0 ? 1.0 / static_cast<double>(N) : 0.0;
    xent_rows(logits, labels, probs, N, K, scale, row_loss, loss, dlogits);
}

// ---- bindings ----

namespace {

// The logits (N, K) and the target: int64 labels (N,) or probabilities (N, K) of the logits' dtype.
template <class T>
struct Target {
    const std::int64_t* labels = nullptr;
    const T* probs = nullptr;
};

template <class T>
Target<T> target_in(const py::array& labels, index_t N, index_t K) {
    Target<T> t;
    if (labels.dtype().is(py::dtype::of<std::int64_t>()))
        t.labels = in_ptr<std::int64_t>(labels, "labels", {N});
    else
        t.probs = in_ptr<T>(labels, "labels", {N, K});
    return t;
}

template <class T>
const T* logits_in(const py::array& logits, index_t& N, index_t& K) {
    const T* p = in_ptr<T>(logits, "logits", {-1, -1});
    N = logits.shape(0);
    K = logits.shape(1);
    require(K > 0, "logits must have at least one class (K > 0)");
    return p;
}

template <class T>
T* loss_out(py::array& loss) {
    require(loss.ndim() == 0, "loss must be a 0-d array");
    return out_ptr<T>(loss, "loss", {});
}

}  // namespace

void bind_loss(py::module_& m) {
    m.def("softmax_cross_entropy_forward",
          [](const py::array& logits, const py::array& labels, py::array row_loss, py::array loss) {
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            double* pr = out_ptr<double>(row_loss, "row_loss", {N});
            T* pl = loss_out<T>(loss);
            py::gil_scoped_release nogil;
            softmax_cross_entropy_forward(px, t.labels, t.probs, N, K, pr, pl);
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"));

    m.def("softmax_cross_entropy_backward",
          [](const py::array& logits, const py::array& labels, double dloss, py::array dlogits) {
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            T* pd = out_ptr<T>(dlogits, "dlogits", {N, K});
            py::gil_scoped_release nogil;
            softmax_cross_entropy_backward(px, t.labels, t.probs, N, K, dloss, pd);
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("dloss"), py::arg("dlogits"));

    m.def("softmax_cross_entropy_fused",
          [](const py::array& logits, const py::array& labels, py::array row_loss, py::array loss,
             py::array dlogits) {
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            double* pr = out_ptr<double>(row_loss, "row_loss", {N});
            T* pl = loss_out<T>(loss);
            T* pd = out_ptr<T>(dlogits, "dlogits", {N, K});
            py::gil_scoped_release nogil;
            softmax_cross_entropy_fused(px, t.labels, t.probs, N, K, pr, pl, pd);
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"), py::arg("dlogits"));
}

}  // namespace cnnkit
