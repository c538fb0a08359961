// bind_pool.h: the bindings of the pooling kernels (cpu/pool.cpp, cuda/pool.cu), written once for
// both devices (see bind_array.h). Window pooling maps an image (N, H, W, C) to a pooled map
// (N, OH, OW, C) set by the geometry; global pooling maps (N, H, W, C) to (N, C). argmax / index
// arrays hold the flat in-image cell h*W + w, int32 or int64 (int64 for images of more than
// 2**31 - 1 pixels); None where the kernel may go without them.
#pragma once

#include "bind_array.h"

namespace cnnkit {

// A global pooling image a (N, H, W, C) of element type T, seen as (N, H*W, C).
struct GlobalDims {
    index_t N, HW, C;
};
template <class T>
GlobalDims global_dims(const ArrayView& a, bool writable) {
    check_array<T>(a, {-1, -1, -1, -1}, writable);
    const GlobalDims d{a.shape[0], a.shape[1] * a.shape[2], a.shape[3]};
    require(d.HW > 0 && d.C > 0,
            std::string(a.name) + " must have positive H, W and C, got shape " + shape_str(a.shape));
    return d;
}

// The arrays of max and stochastic pooling's forward: x, y and the chosen cells (y or the index may
// be absent, as the binding allows), the index in I.
template <class T, class I>
struct IndexedPool {
    const T* x;
    T* y;
    I* index;
    IndexedPool(const ArrayView& x_, const ArrayView& y_, const ArrayView& index_, const ConvGeom& g)
        : x(in_ptr<T>(x_, image_shape(g))), y(opt_out<T>(y_, pooled_shape(g))),
          index(opt_out<I>(index_, pooled_shape(g))) {
        require_index_fits<I>(g.H * g.W, index_.name);
    }
};

// A pooling without indices, forward (x -> y) or backward (dy -> dx), through the windows of a
// geometry: kernel(in, out, g, stream), a generic lambda that calls the device's kernel.
template <class D, class Kernel>
void def_window_pool(py::module_& m, const char* name, bool backward, Kernel kernel, const char* doc) {
    using A = typename D::Array;
    const char* in_name = backward ? "dy" : "x";
    const char* out_name = backward ? "dx" : "y";
    m.def(name, [=](const A& in_, const A& out_, const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView in = D::view(in_, in_name), out = D::view(out_, out_name);
        dispatch_float(float_dtype(in), [&](auto t) {
            using T = decltype(t);
            const T* ip = in_ptr<T>(in, backward ? pooled_shape(g) : image_shape(g));
            T* op = out_ptr<T>(out, backward ? image_shape(g) : pooled_shape(g));
            py::gil_scoped_release nogil;
            kernel(ip, op, g, D::stream(stream));
        });
    }, py::arg(in_name), py::arg(out_name), py::arg("geom"), py::kw_only(), D::stream_arg(), doc);
}

// The same for global pooling, the image side (N, H, W, C) giving the sizes:
// kernel(in, out, N, HW, C, stream).
template <class D, class Kernel>
void def_global_pool(py::module_& m, const char* name, bool backward, Kernel kernel, const char* doc) {
    using A = typename D::Array;
    const char* in_name = backward ? "dy" : "x";
    const char* out_name = backward ? "dx" : "y";
    m.def(name, [=](const A& in_, const A& out_, std::uintptr_t stream) {
        const ArrayView in = D::view(in_, in_name), out = D::view(out_, out_name);
        dispatch_float(float_dtype(in), [&](auto t) {
            using T = decltype(t);
            const GlobalDims d = global_dims<T>(backward ? out : in, backward);
            check_array<T>(backward ? in : out, {d.N, d.C}, !backward);
            py::gil_scoped_release nogil;
            kernel(static_cast<const T*>(in.data), static_cast<T*>(out.data), d.N, d.HW, d.C, D::stream(stream));
        });
    }, py::arg(in_name), py::arg(out_name), py::kw_only(), D::stream_arg(), doc);
}

template <class D>
void bind_pool(py::module_& m) {
    using A = typename D::Array;
    def_window_pool<D>(m, "avg_pool2d_forward", false, [](auto... a) { avg_pool2d_forward(a...); },
                       "Average pooling, padded cells not counted.");
    def_window_pool<D>(m, "avg_pool2d_backward", true, [](auto... a) { avg_pool2d_backward(a...); },
                       "Gather backward of average pooling.");
    def_global_pool<D>(m, "global_avg_pool2d_forward", false, [](auto... a) { global_avg_pool2d_forward(a...); },
                       "Mean over H and W: (N, H, W, C) -> (N, C).");
    def_global_pool<D>(m, "global_avg_pool2d_backward", true, [](auto... a) { global_avg_pool2d_backward(a...); },
                       "Backward of global average pooling.");

    m.def("max_pool2d_forward", [](const A& x_, const py::object& y_, const py::object& argmax_,
                                   const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView x = D::view(x_, "x");
        const ArrayView y = optional_view<D>(y_, "y"), argmax = optional_view<D>(argmax_, "argmax");
        dispatch_float_index(x, argmax, [&](auto t, auto i) {
            const IndexedPool<decltype(t), decltype(i)> a(x, y, argmax, g);
            require(a.y || a.index, "max_pool2d_forward needs y, argmax or both");
            py::gil_scoped_release nogil;
            max_pool2d_forward(a.x, a.y, a.index, g, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("argmax"), py::arg("geom"), py::kw_only(), D::stream_arg(),
       "Max pooling; writes y and the flat in-image argmax (h*W + w), unless either is None.");

    m.def("max_pool2d_backward", [](const A& dy_, const A& argmax_, const A& dx_, const py::tuple& geom,
                                    std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView dy = D::view(dy_, "dy"), argmax = D::view(argmax_, "argmax"), dx = D::view(dx_, "dx");
        dispatch_float_index(dy, argmax, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            const T* dyp = in_ptr<T>(dy, pooled_shape(g));
            const I* ap = in_ptr<I>(argmax, pooled_shape(g));
            require_index_fits<I>(g.H * g.W, "argmax");
            T* dxp = out_ptr<T>(dx, image_shape(g));
            py::gil_scoped_release nogil;
            max_pool2d_backward(dyp, ap, dxp, g, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("argmax"), py::arg("dx"), py::arg("geom"), py::kw_only(), D::stream_arg(),
       "Gather backward of max (or training-mode stochastic) pooling from the saved index.");

    m.def("global_max_pool2d_forward", [](const A& x_, const A& y_, const py::object& argmax_,
                                          std::uintptr_t stream) {
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y"), argmax = optional_view<D>(argmax_, "argmax");
        dispatch_float_index(x, argmax, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            const GlobalDims d = global_dims<T>(x, false);
            require_index_fits<I>(d.HW, "argmax");
            T* yp = out_ptr<T>(y, {d.N, d.C});
            I* ap = opt_out<I>(argmax, {d.N, d.C});
            py::gil_scoped_release nogil;
            global_max_pool2d_forward(static_cast<const T*>(x.data), yp, ap, d.N, d.HW, d.C, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("argmax"), py::kw_only(), D::stream_arg(),
       "Max over H and W, with the flat argmax.");

    m.def("global_max_pool2d_backward", [](const A& dy_, const A& argmax_, const A& dx_, std::uintptr_t stream) {
        const ArrayView dy = D::view(dy_, "dy"), argmax = D::view(argmax_, "argmax"), dx = D::view(dx_, "dx");
        dispatch_float_index(dy, argmax, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            const GlobalDims d = global_dims<T>(dx, true);
            const T* dyp = in_ptr<T>(dy, {d.N, d.C});
            const I* ap = in_ptr<I>(argmax, {d.N, d.C});
            require_index_fits<I>(d.HW, "argmax");
            py::gil_scoped_release nogil;
            global_max_pool2d_backward(dyp, ap, static_cast<T*>(dx.data), d.N, d.HW, d.C, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("argmax"), py::arg("dx"), py::kw_only(), D::stream_arg(),
       "Backward of global max pooling.");

    m.def("stochastic_pool2d_forward", [](const A& x_, const A& y_, const py::object& index_, const py::tuple& geom,
                                          bool training, std::uint64_t seed, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView index = optional_view<D>(index_, "index");
        require(!index.present || training, "index is only written in training mode");
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y");
        dispatch_float_index(x, index, [&](auto t, auto i) {
            const IndexedPool<decltype(t), decltype(i)> a(x, y, index, g);
            py::gil_scoped_release nogil;
            stochastic_pool2d_forward(a.x, a.y, a.index, g, training, seed, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("index"), py::arg("geom"), py::arg("training"), py::arg("seed"),
       py::kw_only(), D::stream_arg(),
       "Stochastic pooling; in training, index (or None) receives the chosen cell h*W + w.");

    m.def("stochastic_pool2d_backward_inference", [](const A& dy_, const A& x_, const A& dx_, const py::tuple& geom,
                                                     std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const ArrayView dy = D::view(dy_, "dy"), x = D::view(x_, "x"), dx = D::view(dx_, "dx");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* dyp = in_ptr<T>(dy, pooled_shape(g));
            const T* xp = in_ptr<T>(x, image_shape(g));
            T* dxp = out_ptr<T>(dx, image_shape(g));
            py::gil_scoped_release nogil;
            stochastic_pool2d_backward_inference(dyp, xp, dxp, g, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dx"), py::arg("geom"), py::kw_only(), D::stream_arg(),
       "Backward of inference-mode stochastic pooling.");
}

}  // namespace cnnkit
