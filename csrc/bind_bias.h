// bind_bias.h: the bindings of bias_add and bias_grad (cpu/bias.cpp, cuda/bias.cu), written once
// for both devices (see bind_array.h).
#pragma once

#include "bind_array.h"

namespace cnnkit {

template <class D>
void bind_bias(py::module_& m) {
    using A = typename D::Array;
    m.def("bias_add", [](const A& y_, const A& b_, bool relu, std::uintptr_t stream) {
        const ArrayView y = D::view(y_, "y"), b = D::view(b_, "b");
        dispatch_float(float_dtype(y), [&](auto t) {
            using T = decltype(t);
            const index_t O = check_array<T>(b, {-1});
            T* yp = out_ptr<T>(y, {-1, O});
            const T* bp = in_ptr<T>(b, {O});
            const index_t rows = y.shape[0];
            py::gil_scoped_release nogil;
            bias_add(yp, bp, rows, O, relu, D::stream(stream));
        });
    }, py::arg("y"), py::arg("b"), py::arg("relu") = false, py::kw_only(), D::stream_arg(),
       "y (rows, O) += b (O,) in place, then max(y, 0) if relu.");

    m.def("bias_grad", [](const A& dy_, const A& db_, std::uintptr_t stream) {
        const ArrayView dy = D::view(dy_, "dy"), db = D::view(db_, "db");
        dispatch_float(float_dtype(dy), [&](auto t) {
            using T = decltype(t);
            const index_t O = check_array<T>(db, {-1}, true);
            const T* dyp = in_ptr<T>(dy, {-1, O});
            T* dbp = out_ptr<T>(db, {O});
            const index_t rows = dy.shape[0];
            py::gil_scoped_release nogil;
            bias_grad(dyp, dbp, rows, O, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("db"), py::kw_only(), D::stream_arg(),
       "db (O,) = column sums of dy (rows, O), deterministic.");
}

}  // namespace cnnkit
