// bind_im2col.h: the bindings of im2col and col2im_accumulate (cpu/im2col.cpp, cuda/im2col.cu),
// written once for both devices (see bind_array.h).
#pragma once

#include "bind_array.h"

namespace cnnkit {

// The geometry, once [row0, row1) is checked to be a range of its im2col matrix's rows.
inline ConvGeom geom_with_rows(const py::tuple& geom, index_t row0, index_t row1) {
    const ConvGeom g = geom_from(geom);
    require(0 <= row0 && row0 <= row1 && row1 <= g.out_pixels(),
            "row range [" + std::to_string(row0) + ", " + std::to_string(row1) + ") must lie inside [0, N*OH*OW = " +
                std::to_string(g.out_pixels()) + "]");
    return g;
}

template <class D>
void bind_im2col(py::module_& m) {
    using A = typename D::Array;
    m.def("im2col", [](const A& x_, const A& col_, const py::tuple& geom, index_t row0, index_t row1, bool parallel,
                       std::uintptr_t stream) {
        const ConvGeom g = geom_with_rows(geom, row0, row1);
        const ArrayView x = D::view(x_, "x");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            T* cp = out_ptr<T>(D::view(col_, "col"), {row1 - row0, g.patch_size()});
            py::gil_scoped_release nogil;
            im2col(xp, cp, g, row0, row1, parallel, D::stream(stream));
        });
    }, py::arg("x"), py::arg("col"), py::arg("geom"), py::arg("row0"), py::arg("row1"), py::arg("parallel") = true,
       py::kw_only(), D::stream_arg(),
       "Fill col (row1-row0, KH*KW*C) with rows [row0, row1) of the im2col matrix of x (NHWC);\n"
       "parallel=False copies on the calling thread only (the CPU; the GPU ignores it).");

    m.def("col2im_accumulate", [](const A& dcol_, const A& dx_, const py::tuple& geom, index_t row0, index_t row1,
                                  std::uintptr_t stream) {
        const ConvGeom g = geom_with_rows(geom, row0, row1);
        const ArrayView dcol = D::view(dcol_, "dcol");
        dispatch_float(float_dtype(dcol), [&](auto t) {
            using T = decltype(t);
            const T* cp = in_ptr<T>(dcol, {row1 - row0, g.patch_size()});
            T* dp = out_ptr<T>(D::view(dx_, "dx"), image_shape(g));
            py::gil_scoped_release nogil;
            col2im_accumulate(cp, dp, g, row0, row1, D::stream(stream));
        });
    }, py::arg("dcol"), py::arg("dx"), py::arg("geom"), py::arg("row0"), py::arg("row1"), py::kw_only(),
       D::stream_arg(),
       "dx (NHWC) += col2im of dcol, the rows [row0, row1) of the column-gradient matrix (a gather).");
}

}  // namespace cnnkit
