// norm.cpp: batch normalization (Keras semantics) over a channels-last tensor viewed as (M, C):
// M = N*H*W rows of C contiguous channels, statistics per channel over the rows.
// Reductions split the rows into blocks of a fixed size (set by C, never by the thread count); the
// blocks accumulate per-channel partial sums in double in parallel and the partials are then added in
// block order, so every result is bit-identical for any OpenMP thread count. The variance is a second
// pass over (x - mean)^2 (no cancellation); normalize and dx are elementwise passes, parallel over rows.
#include <algorithm>
#include <cmath>
#include <vector>

#include "bind_util.h"

namespace cnnkit {

namespace {

// Rows per reduction block: about 16K elements, at least 8 rows. Depends on C only.
inline index_t bn_block_rows(index_t C) { return std::max<index_t>(8, 16384 / std::max<index_t>(C, 1)); }

// total[j] = sum over rows of what accumulate(r0, r1, partial) adds into partial[j], j < width*C.
// Scratch: one partial vector of width*C doubles per block, allocated here.
template <class F>
void block_reduce(index_t M, index_t C, index_t width, F&& accumulate, double* total) {
    const index_t rows = bn_block_rows(C);
    const index_t nblocks = (M + rows - 1) / rows;
    const index_t stride = checked_mul(width, C, "batch norm partial sums");
    std::vector<double> partial(static_cast<size_t>(checked_mul(nblocks, stride, "batch norm partial sums")));
#pragma omp parallel for schedule(static)
    for (index_t b = 0; b < nblocks; ++b) {
        double* p = partial.data() + b * stride;
        std::fill(p, p + stride, 0.0);
        accumulate(b * rows, std::min(M, (b + 1) * rows), p);
    }
    std::fill(total, total + stride, 0.0);
    for (index_t b = 0; b < nblocks; ++b) {
        const double* p = partial.data() + b * stride;
        for (index_t j = 0; j < stride; ++j) total[j] += p[j];
    }
}

// Per-channel batch mean and biased variance in double (M > 0).
template <class T>
void batch_moments(const T* x, index_t M, index_t C, double* mean, double* var) {
    block_reduce(M, C, 1, [=](index_t r0, index_t r1, double* p) {
        for (index_t r = r0; r < r1; ++r) {
            const T* row = x + r * C;
            for (index_t c = 0; c < C; ++c) p[c] += static_cast<double>(row[c]);
        }
    }, mean);
    for (index_t c = 0; c < C; ++c) mean[c] /= static_cast<double>(M);
    block_reduce(M, C, 1, [=](index_t r0, index_t r1, double* p) {
        for (index_t r = r0; r < r1; ++r) {
            const T* row = x + r * C;
            for (index_t c = 0; c < C; ++c) {
                const double d = static_cast<double>(row[c]) - mean[c];
                p[c] += d * d;
            }
        }
    }, var);
    for (index_t c = 0; c < C; ++c) var[c] /= static_cast<double>(M);
}

// y = (x - mean) * (invstd * gamma) + beta, with gamma = 1 / beta = 0 when null.
template <class T>
void normalize_rows(const T* x, const T* mean, const double* invstd, const T* gamma, const T* beta,
                    index_t M, index_t C, T* y) {
    std::vector<T> scale(C), shift(C);  // scratch, C values each
    for (index_t c = 0; c < C; ++c) {
        scale[c] = static_cast<T>(invstd[c] * (gamma ? static_cast<double>(gamma[c]) : 1.0));
        shift[c] = beta ? beta[c] : T(0);
    }
    const T* s = scale.data();
    const T* t = shift.data();
#pragma omp parallel for schedule(static)
    for (index_t r = 0; r < M; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        for (index_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * s[c] + t[c];
    }
}

inline double inv_sqrt(double v, double epsilon) { return 1.0 / std::sqrt(v + epsilon); }

}  // namespace

// Batch statistics of x (M, C): mean and invstd = 1 / sqrt(biased var + epsilon). M = 0 gives mean 0,
// variance 0.
template <class T>
void batch_norm_batch_stats(const T* x, index_t M, index_t C, double epsilon, T* mean, T* invstd) {
    std::vector<double> m(C, 0.0), v(C, 0.0);
    if (M > 0) batch_moments(x, M, C, m.data(), v.data());
    for (index_t c = 0; c < C; ++c) {
        mean[c] = static_cast<T>(m[c]);
        invstd[c] = static_cast<T>(inv_sqrt(v[c], epsilon));
    }
}

// Training forward: normalize with the batch statistics (saved in mean/invstd for the backward) and
// update moving = moving * momentum + batch * (1 - momentum) in place (biased variance, as Keras).
// An empty batch (M = 0) leaves the moving statistics untouched.
template <class T>
void batch_norm_train_forward(const T* x, const T* gamma, const T* beta, index_t M, index_t C,
                              double momentum, double epsilon, T* y, T* mean, T* invstd,
                              T* moving_mean, T* moving_var) {
    std::vector<double> m(C, 0.0), v(C, 0.0), is(C);
    if (M > 0) batch_moments(x, M, C, m.data(), v.data());
    for (index_t c = 0; c < C; ++c) {
        is[c] = inv_sqrt(v[c], epsilon);
        mean[c] = static_cast<T>(m[c]);
        invstd[c] = static_cast<T>(is[c]);
        if (M > 0) {
            moving_mean[c] = static_cast<T>(moving_mean[c] * momentum + m[c] * (1.0 - momentum));
            moving_var[c] = static_cast<T>(moving_var[c] * momentum + v[c] * (1.0 - momentum));
        }
    }
    normalize_rows(x, mean, is.data(), gamma, beta, M, C, y);
}

// Inference forward: normalize with the moving statistics.
template <class T>
void batch_norm_inference_forward(const T* x, const T* gamma, const T* beta, const T* moving_mean,
                                  const T* moving_var, index_t M, index_t C, double epsilon, T* y) {
    std::vector<double> is(C);
    for (index_t c = 0; c < C; ++c) is[c] = inv_sqrt(static_cast<double>(moving_var[c]), epsilon);
    normalize_rows(x, moving_mean, is.data(), gamma, beta, M, C, y);
}

// Training backward from the saved batch statistics. With g = dy * gamma, xhat = (x - mean) * invstd:
// dx = invstd / M * (M * g - sum(g) - xhat * sum(g * xhat)), dgamma = sum(dy * xhat), dbeta = sum(dy).
// Written per channel as dx = a * (dy - mean(dy) - (x - mean) * k), a = gamma * invstd,
// k = invstd^2 * mean(dy * (x - mean)): the subtractions happen at the scale of dy (one value per
// channel gives exactly 0).
template <class T>
void batch_norm_train_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd,
                               index_t M, index_t C, T* dx, T* dgamma, T* dbeta) {
    std::vector<double> sums(2 * C);  // [sum(dy) | sum(dy * (x - mean))]
    block_reduce(M, C, 2, [=](index_t r0, index_t r1, double* p) {
        double* q = p + C;
        for (index_t r = r0; r < r1; ++r) {
            const T* dr = dy + r * C;
            const T* xr = x + r * C;
            for (index_t c = 0; c < C; ++c) {
                const double d = static_cast<double>(dr[c]);
                p[c] += d;
                q[c] += d * (static_cast<double>(xr[c]) - static_cast<double>(mean[c]));
            }
        }
    }, sums.data());
    std::vector<T> a(C), mdy(C), k(C);
    const double Md = static_cast<double>(std::max<index_t>(M, 1));
    for (index_t c = 0; c < C; ++c) {
        const double is = static_cast<double>(invstd[c]);
        dbeta[c] = static_cast<T>(sums[c]);
        dgamma[c] = static_cast<T>(sums[C + c] * is);
        a[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * is);
        mdy[c] = static_cast<T>(sums[c] / Md);
        k[c] = static_cast<T>(is * is * sums[C + c] / Md);
    }
    const T *pa = a.data(), *pm = mdy.data(), *pk = k.data();
#pragma omp parallel for schedule(static)
    for (index_t r = 0; r < M; ++r) {
        const T* dr = dy + r * C;
        const T* xr = x + r * C;
        T* o = dx + r * C;
        for (index_t c = 0; c < C; ++c) o[c] = pa[c] * (dr[c] - pm[c] - (xr[c] - mean[c]) * pk[c]);
    }
}

// Inference backward: the moving statistics are constants, so dx = dy * gamma * invstd(moving);
// dgamma = sum(dy * xhat), dbeta = sum(dy). dx is written during the reduction pass.
template <class T>
void batch_norm_inference_backward(const T* dy, const T* x, const T* gamma, const T* moving_mean,
                                   const T* moving_var, index_t M, index_t C, double epsilon, T* dx,
                                   T* dgamma, T* dbeta) {
    std::vector<double> is(C);
    std::vector<T> a(C);
    for (index_t c = 0; c < C; ++c) {
        is[c] = inv_sqrt(static_cast<double>(moving_var[c]), epsilon);
        a[c] = static_cast<T>((gamma ? static_cast<double>(gamma[c]) : 1.0) * is[c]);
    }
    const T* pa = a.data();
    std::vector<double> sums(2 * C);
    block_reduce(M, C, 2, [=](index_t r0, index_t r1, double* p) {
        double* q = p + C;
        for (index_t r = r0; r < r1; ++r) {
            const T* dr = dy + r * C;
            const T* xr = x + r * C;
            T* o = dx + r * C;
            for (index_t c = 0; c < C; ++c) {
                const double d = static_cast<double>(dr[c]);
                p[c] += d;
                q[c] += d * (static_cast<double>(xr[c]) - static_cast<double>(moving_mean[c]));
                o[c] = pa[c] * dr[c];
            }
        }
    }, sums.data());
    for (index_t c = 0; c < C; ++c) {
        dbeta[c] = static_cast<T>(sums[c]);
        dgamma[c] = static_cast<T>(sums[C + c] * is[c]);
    }
}

// ---- bindings ----

namespace {

// x as (M, C): returns M and sets C.
template <class T>
const T* rows_in(const py::array& a, const char* name, index_t& M, index_t& C) {
    const T* p = in_ptr<T>(a, name, {-1, -1});
    M = a.shape(0);
    C = a.shape(1);
    require(C > 0, std::string(name) + " must have at least one channel");
    return p;
}

template <class T>
const T* opt_in(const py::object& o, const char* name, index_t C) {
    if (o.is_none()) return nullptr;
    return in_ptr<T>(py::cast<py::array>(o), name, {C});
}

void check_epsilon(double epsilon) {
    require(epsilon > 0 && std::isfinite(epsilon), "epsilon must be positive and finite, received epsilon=" +
                                                       std::to_string(epsilon));
}

}  // namespace

void bind_norm(py::module_& m) {
    m.def("batch_norm_batch_stats", [](const py::array& x, double epsilon, py::array mean, py::array invstd) {
        check_epsilon(epsilon);
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            T* pm = out_ptr<T>(mean, "mean", {C});
            T* pi = out_ptr<T>(invstd, "invstd", {C});
            py::gil_scoped_release nogil;
            batch_norm_batch_stats(px, M, C, epsilon, pm, pi);
        });
    }, py::arg("x"), py::arg("epsilon"), py::arg("mean"), py::arg("invstd"));

    m.def("batch_norm_train_forward",
          [](const py::array& x, const py::object& gamma, const py::object& beta, py::array moving_mean,
             py::array moving_var, double momentum, double epsilon, py::array y, py::array mean,
             py::array invstd) {
        check_epsilon(epsilon);
        require(momentum >= 0 && momentum <= 1,
                "momentum must be in [0, 1], received momentum=" + std::to_string(momentum));
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pb = opt_in<T>(beta, "beta", C);
            T* pmm = out_ptr<T>(moving_mean, "moving_mean", {C});
            T* pmv = out_ptr<T>(moving_var, "moving_var", {C});
            T* py_ = out_ptr<T>(y, "y", {M, C});
            T* pm = out_ptr<T>(mean, "mean", {C});
            T* pi = out_ptr<T>(invstd, "invstd", {C});
            py::gil_scoped_release nogil;
            batch_norm_train_forward(px, pg, pb, M, C, momentum, epsilon, py_, pm, pi, pmm, pmv);
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("momentum"), py::arg("epsilon"), py::arg("y"), py::arg("mean"), py::arg("invstd"));

    m.def("batch_norm_inference_forward",
          [](const py::array& x, const py::object& gamma, const py::object& beta,
             const py::array& moving_mean, const py::array& moving_var, double epsilon, py::array y) {
        check_epsilon(epsilon);
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pb = opt_in<T>(beta, "beta", C);
            const T* pmm = in_ptr<T>(moving_mean, "moving_mean", {C});
            const T* pmv = in_ptr<T>(moving_var, "moving_var", {C});
            T* py_ = out_ptr<T>(y, "y", {M, C});
            py::gil_scoped_release nogil;
            batch_norm_inference_forward(px, pg, pb, pmm, pmv, M, C, epsilon, py_);
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("y"));

    m.def("batch_norm_train_backward",
          [](const py::array& dy, const py::array& x, const py::object& gamma, const py::array& mean,
             const py::array& invstd, py::array dx, py::array dgamma, py::array dbeta) {
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pdy = in_ptr<T>(dy, "dy", {M, C});
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pm = in_ptr<T>(mean, "mean", {C});
            const T* pi = in_ptr<T>(invstd, "invstd", {C});
            T* pdx = out_ptr<T>(dx, "dx", {M, C});
            T* pdg = out_ptr<T>(dgamma, "dgamma", {C});
            T* pdb = out_ptr<T>(dbeta, "dbeta", {C});
            py::gil_scoped_release nogil;
            batch_norm_train_backward(pdy, px, pg, pm, pi, M, C, pdx, pdg, pdb);
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("invstd"), py::arg("dx"),
       py::arg("dgamma"), py::arg("dbeta"));

    m.def("batch_norm_inference_backward",
          [](const py::array& dy, const py::array& x, const py::object& gamma, const py::array& moving_mean,
             const py::array& moving_var, double epsilon, py::array dx, py::array dgamma, py::array dbeta) {
        check_epsilon(epsilon);
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pdy = in_ptr<T>(dy, "dy", {M, C});
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pmm = in_ptr<T>(moving_mean, "moving_mean", {C});
            const T* pmv = in_ptr<T>(moving_var, "moving_var", {C});
            T* pdx = out_ptr<T>(dx, "dx", {M, C});
            T* pdg = out_ptr<T>(dgamma, "dgamma", {C});
            T* pdb = out_ptr<T>(dbeta, "dbeta", {C});
            py::gil_scoped_release nogil;
            batch_norm_inference_backward(pdy, px, pg, pmm, pmv, M, C, epsilon, pdx, pdg, pdb);
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"));
}

}  // namespace cnnkit
