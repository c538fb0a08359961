// bind_norm.h: the bindings of batch normalization (cpu/norm.cpp, cuda/norm.cu), written once for
// both devices (see bind_array.h). x, y, dy and dx are (M, C) (cnnkit.ops flattens N, H, W); the
// per-channel arrays are (C,): gamma and beta (None for 1 and 0) and the moving statistics in x's
// dtype, the saved batch statistics mean and invstd in float64.
#pragma once

#include "bind_array.h"

namespace cnnkit {

// x as (M, C), at least one channel, and the checks of the other arrays against it.
template <class T>
struct NormRows {
    index_t M, C;
    const T* x;
    explicit NormRows(const ArrayView& x_) : x(matrix_in<T>(x_, "channel", M, C)) {}
    const T* rows_in(const ArrayView& a) const { return in_ptr<T>(a, {M, C}); }
    T* rows_out(const ArrayView& a) const { return out_ptr<T>(a, {M, C}); }
    const T* param_in(const ArrayView& a) const { return opt_in<T>(a, {C}); }  // nullptr for None
    T* param_out(const ArrayView& a) const { return out_ptr<T>(a, {C}); }
    const double* stat_in(const ArrayView& a) const { return in_ptr<double>(a, {C}); }
    double* stat_out(const ArrayView& a) const { return out_ptr<double>(a, {C}); }
};

// What both backwards take besides the statistics: dy and gamma, and the gradients dx, dgamma, dbeta.
template <class T>
struct NormGrads {
    const T *dy, *gamma;
    T *dx, *dgamma, *dbeta;
};
template <class D, class T>
NormGrads<T> norm_grads(const NormRows<T>& r, const py::object& dy, const py::object& gamma, const py::object& dx,
                        const py::object& dgamma, const py::object& dbeta) {
    return {r.rows_in(D::view(dy, "dy")), r.param_in(optional_view<D>(gamma, "gamma")), r.rows_out(D::view(dx, "dx")),
            r.param_out(D::view(dgamma, "dgamma")), r.param_out(D::view(dbeta, "dbeta"))};
}

// f(NormRows<T>) for x's float dtype T.
template <class D, class F>
void with_norm_rows(const py::object& x_, F&& f) {
    const ArrayView x = D::view(x_, "x");
    dispatch_float(float_dtype(x), [&](auto t) { f(NormRows<decltype(t)>(x)); });
}

template <class D>
void bind_norm(py::module_& m) {
    using A = typename D::Array;
    m.def("batch_norm_batch_stats", [](const A& x, double epsilon, const A& mean, const A& invstd,
                                       std::uintptr_t stream) {
        check_epsilon(epsilon);
        with_norm_rows<D>(x, [&](const auto& r) {
            double* pm = r.stat_out(D::view(mean, "mean"));
            double* pi = r.stat_out(D::view(invstd, "invstd"));
            py::gil_scoped_release nogil;
            batch_norm_batch_stats(r.x, r.M, r.C, epsilon, pm, pi, D::stream(stream));
        });
    }, py::arg("x"), py::arg("epsilon"), py::arg("mean"), py::arg("invstd"), py::kw_only(), D::stream_arg());

    m.def("batch_norm_train_forward", [](const A& x, const py::object& gamma, const py::object& beta,
                                         const A& moving_mean, const A& moving_var, double momentum, double epsilon,
                                         const A& y, const A& mean, const A& invstd, std::uintptr_t stream) {
        check_epsilon(epsilon);
        check_momentum(momentum);
        with_norm_rows<D>(x, [&](const auto& r) {
            const auto* pg = r.param_in(optional_view<D>(gamma, "gamma"));
            const auto* pb = r.param_in(optional_view<D>(beta, "beta"));
            auto* pmm = r.param_out(D::view(moving_mean, "moving_mean"));
            auto* pmv = r.param_out(D::view(moving_var, "moving_var"));
            auto* py_ = r.rows_out(D::view(y, "y"));
            double* pm = r.stat_out(D::view(mean, "mean"));
            double* pi = r.stat_out(D::view(invstd, "invstd"));
            py::gil_scoped_release nogil;
            batch_norm_train_forward(r.x, pg, pb, r.M, r.C, momentum, epsilon, py_, pm, pi, pmm, pmv,
                                     D::stream(stream));
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("momentum"), py::arg("epsilon"), py::arg("y"), py::arg("mean"), py::arg("invstd"), py::kw_only(),
       D::stream_arg());

    m.def("batch_norm_inference_forward", [](const A& x, const py::object& gamma, const py::object& beta,
                                             const A& moving_mean, const A& moving_var, double epsilon, const A& y,
                                             std::uintptr_t stream) {
        check_epsilon(epsilon);
        with_norm_rows<D>(x, [&](const auto& r) {
            const auto* pg = r.param_in(optional_view<D>(gamma, "gamma"));
            const auto* pb = r.param_in(optional_view<D>(beta, "beta"));
            const auto* pmm = r.param_in(D::view(moving_mean, "moving_mean"));
            const auto* pmv = r.param_in(D::view(moving_var, "moving_var"));
            auto* py_ = r.rows_out(D::view(y, "y"));
            py::gil_scoped_release nogil;
            batch_norm_inference_forward(r.x, pg, pb, pmm, pmv, r.M, r.C, epsilon, py_, D::stream(stream));
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("y"), py::kw_only(), D::stream_arg());

    m.def("batch_norm_train_backward", [](const A& dy, const A& x, const py::object& gamma, const A& mean,
                                          const A& invstd, const A& dx, const A& dgamma, const A& dbeta,
                                          std::uintptr_t stream) {
        with_norm_rows<D>(x, [&](const auto& r) {
            const auto g = norm_grads<D>(r, dy, gamma, dx, dgamma, dbeta);
            const double* pm = r.stat_in(D::view(mean, "mean"));
            const double* pi = r.stat_in(D::view(invstd, "invstd"));
            py::gil_scoped_release nogil;
            batch_norm_train_backward(g.dy, r.x, g.gamma, pm, pi, r.M, r.C, g.dx, g.dgamma, g.dbeta, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("invstd"), py::arg("dx"),
       py::arg("dgamma"), py::arg("dbeta"), py::kw_only(), D::stream_arg());

    m.def("batch_norm_inference_backward", [](const A& dy, const A& x, const py::object& gamma, const A& moving_mean,
                                              const A& moving_var, double epsilon, const A& dx, const A& dgamma,
                                              const A& dbeta, std::uintptr_t stream) {
        check_epsilon(epsilon);
        with_norm_rows<D>(x, [&](const auto& r) {
            const auto g = norm_grads<D>(r, dy, gamma, dx, dgamma, dbeta);
            const auto* pmm = r.param_in(D::view(moving_mean, "moving_mean"));
            const auto* pmv = r.param_in(D::view(moving_var, "moving_var"));
            py::gil_scoped_release nogil;
            batch_norm_inference_backward(g.dy, r.x, g.gamma, pmm, pmv, r.M, r.C, epsilon, g.dx, g.dgamma, g.dbeta,
                                          D::stream(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::kw_only(), D::stream_arg());
}

}  // namespace cnnkit
