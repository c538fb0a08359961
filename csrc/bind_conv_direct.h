// bind_conv_direct.h: the bindings of the direct convolution for small filters (cpu/conv_direct.cpp,
// cuda/conv_direct.cu), written once for both devices (see bind_array.h).
#pragma once

#include "bind_array.h"

namespace cnnkit {

template <class D>
void bind_conv_direct(py::module_& m) {
    using A = typename D::Array;
    m.def("conv2d_direct_forward", [](const A& x_, const A& w_, const py::object& b_, const A& y_,
                                      const py::tuple& geom, bool relu, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView x = D::view(x_, "x"), w = D::view(w_, "w");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            const T* wp = in_ptr<T>(w, {g.KH, g.KW, g.C, -1});
            const index_t O = w.shape[3];
            const T* bp = opt_in<T>(optional_view<D>(b_, "b"), {O});
            T* yp = out_ptr<T>(D::view(y_, "y"), {g.N, g.OH, g.OW, O});
            py::gil_scoped_release nogil;
            if (O > 0) conv2d_direct_forward(xp, wp, bp, yp, g, O, relu, D::stream(stream));
        });
    }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("geom"), py::arg("relu"), py::kw_only(),
       D::stream_arg(),
       "y (N, OH, OW, O) = conv(x, w) + b (b may be None), then max(., 0) if relu: the direct\n"
       "kernel for small filters (x NHWC, w HWIO).");

    m.def("conv2d_direct_backward_weights", [](const A& dy_, const A& x_, const A& dw_, const py::object& db_,
                                               const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView x = D::view(x_, "x"), dw = D::view(dw_, "dw");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            T* dwp = out_ptr<T>(dw, {g.KH, g.KW, g.C, -1});
            const index_t O = dw.shape[3];
            const T* dyp = in_ptr<T>(D::view(dy_, "dy"), {g.N, g.OH, g.OW, O});
            T* dbp = opt_out<T>(optional_view<D>(db_, "db"), {O});
            py::gil_scoped_release nogil;
            if (O > 0) conv2d_direct_backward_weights(xp, dyp, dwp, dbp, g, O, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dw"), py::arg("db"), py::arg("geom"), py::kw_only(), D::stream_arg(),
       "dw (KH, KW, C, O) and db (O,) or None: the weight and bias gradients of conv2d by the\n"
       "direct kernel for small filters; deterministic.");
}

}  // namespace cnnkit
