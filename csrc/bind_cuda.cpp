// bind_cuda.cpp: the private module cnnkit._cuda, the CUDA twin of cnnkit._core (bind_cpu.cpp).
// Every function has the name, the arguments (in the same order) and the checks of its CPU twin,
// plus a keyword argument `stream`: the cudaStream_t to run on as an integer (cnnkit.ops passes
// cupy.cuda.get_current_stream().ptr, so the kernels are ordered with the CuPy work around them).
// Arrays are any objects exposing __cuda_array_interface__ (CuPy arrays): the binding reads the
// device pointer, dtype, shape and strides from it and checks them (dtype, rank, shape,
// C-contiguity, writability) before any kernel sees the pointer. Nothing here touches the GPU at
// import time (the CUDA runtime is linked statically and loads the driver on first use), so
// `import cnnkit._cuda` works on a machine without a GPU or a driver.
// This file is plain C++ (no CUDA headers); the kernels' host entry points are in cuda/kernels.h.
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/kernels.h"

namespace py = pybind11;

namespace cnnkit {
namespace {


enum class DType { f32, f64 };

// A device array as described by its __cuda_array_interface__.
struct Dev {
    std::uintptr_t ptr = 0;
    std::vector<index_t> shape;
    std::string typestr;
    bool readonly = false;
    bool contiguous = true;
    index_t size = 1;
    index_t ndim() const { return static_cast<index_t>(shape.size()); }
};

std::string dtype_name(const std::string& typestr) {
    if (typestr == "<f4") return "float32";
    if (typestr == "<f8") return "float64";
    if (typestr == "<f2") return "float16";
    if (typestr == "<i4") return "int32";
    if (typestr == "<i8") return "int64";
    if (typestr == "|b1") return "bool";
    return typestr;
}

Dev dev_array(const py::handle& obj, const char* name) {
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw py::type_error(std::string(name) + " must be a CuPy array (GPU memory), got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    const py::dict cai = obj.attr("__cuda_array_interface__");
    Dev d;
    for (const auto& s : cai["shape"].cast<py::tuple>()) {
        d.shape.push_back(s.cast<index_t>());
        d.size *= d.shape.back();
    }
    d.typestr = cai["typestr"].cast<std::string>();
    const py::tuple data = cai["data"].cast<py::tuple>();
    d.ptr = data[0].cast<std::uintptr_t>();
    d.readonly = data[1].cast<bool>();
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        const py::tuple strides = cai["strides"].cast<py::tuple>();
        index_t itemsize = d.typestr.size() > 2 ? std::stoll(d.typestr.substr(2)) : 1;
        index_t expect = itemsize;
        for (index_t i = d.ndim() - 1; i >= 0; --i) {
            if (d.shape[i] > 1 && strides[i].cast<index_t>() != expect) d.contiguous = false;
            expect *= d.shape[i];
        }
    }
    return d;
}

std::string shape_str(const Dev& a) {
    std::string s = "(";
    for (index_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape[i]);
    return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
const char* typestr_of();
template <>
const char* typestr_of<float>() { return "<f4"; }
template <>
const char* typestr_of<double>() { return "<f8"; }
template <>
const char* typestr_of<std::int32_t>() { return "<i4"; }
template <>
const char* typestr_of<std::int64_t>() { return "<i8"; }

DType float_dtype(const Dev& a, const char* name) {
    if (a.typestr == "<f4") return DType::f32;
    if (a.typestr == "<f8") return DType::f64;
    throw py::type_error(std::string(name) + " must be float32 or float64, got " + dtype_name(a.typestr));
}

// As bind_util.h's check_array: element type T, C-contiguous, writable when asked, and exactly that
// shape when given (-1 matches any extent). Returns the element count.
template <class T>
index_t check_array(const Dev& a, const char* name, std::initializer_list<index_t> shape, bool writable = false) {
    if (a.typestr != typestr_of<T>())
        throw py::type_error(std::string(name) + " has dtype " + dtype_name(a.typestr) + ", expected " +
                             dtype_name(typestr_of<T>()));
    if (!a.contiguous) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    if (writable && a.readonly) throw std::invalid_argument(std::string(name) + " must be writable");
    if (shape.size() != 0) {
        bool ok = static_cast<size_t>(a.ndim()) == shape.size();
        size_t i = 0;
        for (index_t s : shape) {
            if (ok && s >= 0 && a.shape[i] != s) ok = false;
            ++i;
        }
        if (!ok) {
            std::string want = "(";
            i = 0;
            for (index_t s : shape) want += (i++ ? ", " : "") + (s < 0 ? std::string("*") : std::to_string(s));
            throw std::invalid_argument(std::string(name) + " has shape " + shape_str(a) + ", expected " + want + ")");
        }
    }
    return a.size;
}

template <class T>
const T* in_ptr(const Dev& a, const char* name, std::initializer_list<index_t> shape) {
    check_array<T>(a, name, shape);
    return reinterpret_cast<const T*>(a.ptr);
}

template <class T>
T* out_ptr(const Dev& a, const char* name, std::initializer_list<index_t> shape) {
    check_array<T>(a, name, shape, true);
    return reinterpret_cast<T*>(a.ptr);
}

template <class T>
index_t check_like(const Dev& a, const char* name, const Dev& ref, const char* ref_name, bool writable) {
    const index_t n = check_array<T>(a, name, {}, writable);
    if (a.shape != ref.shape)
        throw std::invalid_argument(std::string(name) + " has shape " + shape_str(a) + " but " + ref_name +
                                    " has shape " + shape_str(ref));
    return n;
}

ConvGeom geom_from(const py::tuple& t) {
    if (t.size() != 14) throw std::invalid_argument("geometry must be a 14-tuple");
    index_t v[14];
    for (size_t i = 0; i < 14; ++i) v[i] = t[i].cast<index_t>();
    return make_geom(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]);
}

template <class F>
auto dispatch_float(DType dt, F&& f) {
    if (dt == DType::f32) return f(float{});
    return f(double{});
}

enum class IType { i32, i64 };

IType index_dtype(const Dev& a, const char* name) {
    if (a.typestr == "<i4") return IType::i32;
    if (a.typestr == "<i8") return IType::i64;
    throw py::type_error(std::string(name) + " must be int32 or int64, got " + dtype_name(a.typestr));
}

template <class F>
auto dispatch_index(IType it, F&& f) {
    if (it == IType::i32) return f(std::int32_t{});
    return f(std::int64_t{});
}

template <class I>
void require_index_fits(index_t pixels, const char* name) {
    require(pixels - 1 <= static_cast<index_t>(std::numeric_limits<I>::max()),
            std::string(name) + " must be int64 for images of more than 2**31 - 1 pixels");
}

void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

// An optional device array argument: None -> an empty Dev with ptr 0 and `present` false.
struct Opt {
    bool present = false;
    Dev d;
};
Opt opt(const py::object& o, const char* name) {
    Opt r;
    if (!o.is_none()) r.present = true, r.d = dev_array(o, name);
    return r;
}

#define STREAM_ARG py::kw_only(), py::arg("stream")  // always by keyword: cnnkit.ops._backend passes it

// ---- im2col / conv -----------------------------------------------------------------------------

void check_rows(const ConvGeom& g, index_t row0, index_t row1) {
    require(0 <= row0 && row0 <= row1 && row1 <= g.out_pixels(),
            "row range [" + std::to_string(row0) + ", " + std::to_string(row1) + ") must lie inside [0, N*OH*OW = " +
                std::to_string(g.out_pixels()) + "]");
}

void bind_im2col(py::module_& m) {
    m.def("im2col", [](const py::object& xo, const py::object& colo, const py::tuple& geom, index_t row0,
                       index_t row1, bool /*parallel*/, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        check_rows(g, row0, row1);
        const Dev x = dev_array(xo, "x"), col = dev_array(colo, "col");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
            T* cp = out_ptr<T>(col, "col", {row1 - row0, g.patch_size()});
            py::gil_scoped_release nogil;
            cuda::im2col<T>(xp, cp, g, row0, row1, stream_of(stream));
        });
    }, py::arg("x"), py::arg("col"), py::arg("geom"), py::arg("row0"), py::arg("row1"), py::arg("parallel") = true,
       STREAM_ARG, "Fill col (row1-row0, KH*KW*C) with rows [row0, row1) of the im2col matrix of x (NHWC).");

    m.def("col2im_accumulate", [](const py::object& dcolo, const py::object& dxo, const py::tuple& geom,
                                  index_t row0, index_t row1, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        check_rows(g, row0, row1);
        const Dev dcol = dev_array(dcolo, "dcol"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(dcol, "dcol"), [&](auto t) {
            using T = decltype(t);
            const T* cp = in_ptr<T>(dcol, "dcol", {row1 - row0, g.patch_size()});
            T* dp = out_ptr<T>(dx, "dx", {g.N, g.H, g.W, g.C});
            py::gil_scoped_release nogil;
            cuda::col2im_accumulate<T>(cp, dp, g, row0, row1, stream_of(stream));
        });
    }, py::arg("dcol"), py::arg("dx"), py::arg("geom"), py::arg("row0"), py::arg("row1"), STREAM_ARG,
       "dx (NHWC) += col2im of dcol, the rows [row0, row1) of the column-gradient matrix (a gather).");

    m.def("bias_add", [](const py::object& yo, const py::object& bo, bool relu, std::uintptr_t stream) {
        const Dev y = dev_array(yo, "y"), b = dev_array(bo, "b");
        dispatch_float(float_dtype(y, "y"), [&](auto t) {
            using T = decltype(t);
            const index_t O = check_array<T>(b, "b", {-1});
            T* yp = out_ptr<T>(y, "y", {-1, O});
            const T* bp = in_ptr<T>(b, "b", {O});
            const index_t rows = y.shape[0];
            py::gil_scoped_release nogil;
            cuda::bias_add<T>(yp, bp, rows, O, relu, stream_of(stream));
        });
    }, py::arg("y"), py::arg("b"), py::arg("relu") = false, STREAM_ARG,
       "y (rows, O) += b (O,) in place, then max(y, 0) if relu.");

    m.def("bias_grad", [](const py::object& dyo, const py::object& dbo, std::uintptr_t stream) {
        const Dev dy = dev_array(dyo, "dy"), db = dev_array(dbo, "db");
        dispatch_float(float_dtype(dy, "dy"), [&](auto t) {
            using T = decltype(t);
            const index_t O = check_array<T>(db, "db", {-1}, true);
            const T* dyp = in_ptr<T>(dy, "dy", {-1, O});
            T* dbp = out_ptr<T>(db, "db", {O});
            const index_t rows = dy.shape[0];
            py::gil_scoped_release nogil;
            cuda::bias_grad<T>(dyp, dbp, rows, O, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("db"), STREAM_ARG, "db (O,) = column sums of dy (rows, O), deterministic.");

    m.def("conv2d_direct_forward", [](const py::object& xo, const py::object& wo, const py::object& bo,
                                      const py::object& yo, const py::tuple& geom, bool relu, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev x = dev_array(xo, "x"), w = dev_array(wo, "w"), y = dev_array(yo, "y");
        const Opt b = opt(bo, "b");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
            const T* wp = in_ptr<T>(w, "w", {g.KH, g.KW, g.C, -1});
            const index_t O = w.shape[3];
            const T* bp = b.present ? in_ptr<T>(b.d, "b", {O}) : nullptr;
            T* yp = out_ptr<T>(y, "y", {g.N, g.OH, g.OW, O});
            py::gil_scoped_release nogil;
            if (O > 0) cuda::conv2d_direct_forward<T>(xp, wp, bp, yp, g, O, relu, stream_of(stream));
        });
    }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("geom"), py::arg("relu"), STREAM_ARG,
       "y (N, OH, OW, O) = conv(x, w) + b (b may be None), then max(., 0) if relu: the direct kernel.");

    m.def("conv2d_direct_backward_weights", [](const py::object& dyo, const py::object& xo, const py::object& dwo,
                                               const py::object& dbo, const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev dy = dev_array(dyo, "dy"), x = dev_array(xo, "x"), dw = dev_array(dwo, "dw");
        const Opt db = opt(dbo, "db");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
            T* dwp = out_ptr<T>(dw, "dw", {g.KH, g.KW, g.C, -1});
            const index_t O = dw.shape[3];
            const T* dyp = in_ptr<T>(dy, "dy", {g.N, g.OH, g.OW, O});
            T* dbp = db.present ? out_ptr<T>(db.d, "db", {O}) : nullptr;
            py::gil_scoped_release nogil;
            if (O > 0) cuda::conv2d_direct_backward_weights<T>(xp, dyp, dwp, dbp, g, O, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dw"), py::arg("db"), py::arg("geom"), STREAM_ARG,
       "dw (KH, KW, C, O) and db (O,) or None by the direct kernel; deterministic.");
}

// ---- pooling -----------------------------------------------------------------------------------

IType index_type_of(const Opt& o, const char* name) { return o.present ? index_dtype(o.d, name) : IType::i64; }

void bind_pool(py::module_& m) {
    m.def("max_pool2d_forward", [](const py::object& xo, const py::object& yo, const py::object& ao,
                                   const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev x = dev_array(xo, "x");
        const Opt y = opt(yo, "y"), a = opt(ao, "argmax");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            dispatch_index(index_type_of(a, "argmax"), [&](auto itag) {
                using I = decltype(itag);
                const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
                T* yp = y.present ? out_ptr<T>(y.d, "y", {g.N, g.OH, g.OW, g.C}) : nullptr;
                I* ap = a.present ? out_ptr<I>(a.d, "argmax", {g.N, g.OH, g.OW, g.C}) : nullptr;
                require_index_fits<I>(g.H * g.W, "argmax");
                require(yp || ap, "max_pool2d_forward needs y, argmax or both");
                py::gil_scoped_release nogil;
                cuda::max_pool2d_forward<T, I>(xp, yp, ap, g, stream_of(stream));
            });
        });
    }, py::arg("x"), py::arg("y"), py::arg("argmax"), py::arg("geom"), STREAM_ARG,
       "Max pooling; writes y and the flat in-image argmax (h*W + w), unless either is None.");

    m.def("max_pool2d_backward", [](const py::object& dyo, const py::object& ao, const py::object& dxo,
                                    const py::tuple& geom, std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev dy = dev_array(dyo, "dy"), a = dev_array(ao, "argmax"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(dy, "dy"), [&](auto tag) {
            using T = decltype(tag);
            dispatch_index(index_dtype(a, "argmax"), [&](auto itag) {
                using I = decltype(itag);
                const T* dyp = in_ptr<T>(dy, "dy", {g.N, g.OH, g.OW, g.C});
                const I* ap = in_ptr<I>(a, "argmax", {g.N, g.OH, g.OW, g.C});
                require_index_fits<I>(g.H * g.W, "argmax");
                T* dxp = out_ptr<T>(dx, "dx", {g.N, g.H, g.W, g.C});
                py::gil_scoped_release nogil;
                cuda::max_pool2d_backward<T, I>(dyp, ap, dxp, g, stream_of(stream));
            });
        });
    }, py::arg("dy"), py::arg("argmax"), py::arg("dx"), py::arg("geom"), STREAM_ARG,
       "Gather backward of max (or training-mode stochastic) pooling from the saved index.");

    m.def("avg_pool2d_forward", [](const py::object& xo, const py::object& yo, const py::tuple& geom,
                                   std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
            T* yp = out_ptr<T>(y, "y", {g.N, g.OH, g.OW, g.C});
            py::gil_scoped_release nogil;
            cuda::avg_pool2d_forward<T>(xp, yp, g, stream_of(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("geom"), STREAM_ARG, "Average pooling, padded cells not counted.");

    m.def("avg_pool2d_backward", [](const py::object& dyo, const py::object& dxo, const py::tuple& geom,
                                    std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev dy = dev_array(dyo, "dy"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(dy, "dy"), [&](auto tag) {
            using T = decltype(tag);
            const T* dyp = in_ptr<T>(dy, "dy", {g.N, g.OH, g.OW, g.C});
            T* dxp = out_ptr<T>(dx, "dx", {g.N, g.H, g.W, g.C});
            py::gil_scoped_release nogil;
            cuda::avg_pool2d_backward<T>(dyp, dxp, g, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("dx"), py::arg("geom"), STREAM_ARG, "Gather backward of average pooling.");

    m.def("global_avg_pool2d_forward", [](const py::object& xo, const py::object& yo, std::uintptr_t stream) {
        const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            const T* xp = in_ptr<T>(x, "x", {-1, -1, -1, -1});
            const index_t N = x.shape[0], HW = x.shape[1] * x.shape[2], C = x.shape[3];
            require(HW > 0 && C > 0, "x must have positive H, W and C, got shape " + shape_str(x));
            T* yp = out_ptr<T>(y, "y", {N, C});
            py::gil_scoped_release nogil;
            cuda::global_avg_pool2d_forward<T>(xp, yp, N, HW, C, stream_of(stream));
        });
    }, py::arg("x"), py::arg("y"), STREAM_ARG, "Mean over H and W: (N, H, W, C) -> (N, C).");

    m.def("global_avg_pool2d_backward", [](const py::object& dyo, const py::object& dxo, std::uintptr_t stream) {
        const Dev dy = dev_array(dyo, "dy"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(dy, "dy"), [&](auto tag) {
            using T = decltype(tag);
            T* dxp = out_ptr<T>(dx, "dx", {-1, -1, -1, -1});
            const index_t N = dx.shape[0], HW = dx.shape[1] * dx.shape[2], C = dx.shape[3];
            require(HW > 0 && C > 0, "dx must have positive H, W and C, got shape " + shape_str(dx));
            const T* dyp = in_ptr<T>(dy, "dy", {N, C});
            py::gil_scoped_release nogil;
            cuda::global_avg_pool2d_backward<T>(dyp, dxp, N, HW, C, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("dx"), STREAM_ARG, "Backward of global average pooling.");

    m.def("global_max_pool2d_forward", [](const py::object& xo, const py::object& yo, const py::object& ao,
                                          std::uintptr_t stream) {
        const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
        const Opt a = opt(ao, "argmax");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            dispatch_index(index_type_of(a, "argmax"), [&](auto itag) {
                using I = decltype(itag);
                const T* xp = in_ptr<T>(x, "x", {-1, -1, -1, -1});
                const index_t N = x.shape[0], HW = x.shape[1] * x.shape[2], C = x.shape[3];
                require(HW > 0 && C > 0, "x must have positive H, W and C, got shape " + shape_str(x));
                require_index_fits<I>(HW, "argmax");
                T* yp = out_ptr<T>(y, "y", {N, C});
                I* ap = a.present ? out_ptr<I>(a.d, "argmax", {N, C}) : nullptr;
                py::gil_scoped_release nogil;
                cuda::global_max_pool2d_forward<T, I>(xp, yp, ap, N, HW, C, stream_of(stream));
            });
        });
    }, py::arg("x"), py::arg("y"), py::arg("argmax"), STREAM_ARG, "Max over H and W, with the flat argmax.");

    m.def("global_max_pool2d_backward", [](const py::object& dyo, const py::object& ao, const py::object& dxo,
                                           std::uintptr_t stream) {
        const Dev dy = dev_array(dyo, "dy"), a = dev_array(ao, "argmax"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(dy, "dy"), [&](auto tag) {
            using T = decltype(tag);
            dispatch_index(index_dtype(a, "argmax"), [&](auto itag) {
                using I = decltype(itag);
                T* dxp = out_ptr<T>(dx, "dx", {-1, -1, -1, -1});
                const index_t N = dx.shape[0], HW = dx.shape[1] * dx.shape[2], C = dx.shape[3];
                require(HW > 0 && C > 0, "dx must have positive H, W and C, got shape " + shape_str(dx));
                const T* dyp = in_ptr<T>(dy, "dy", {N, C});
                const I* ap = in_ptr<I>(a, "argmax", {N, C});
                require_index_fits<I>(HW, "argmax");
                py::gil_scoped_release nogil;
                cuda::global_max_pool2d_backward<T, I>(dyp, ap, dxp, N, HW, C, stream_of(stream));
            });
        });
    }, py::arg("dy"), py::arg("argmax"), py::arg("dx"), STREAM_ARG, "Backward of global max pooling.");

    m.def("stochastic_pool2d_forward", [](const py::object& xo, const py::object& yo, const py::object& io,
                                          const py::tuple& geom, bool training, std::uint64_t seed,
                                          std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Opt idx = opt(io, "index");
        require(!idx.present || training, "index is only written in training mode");
        const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            dispatch_index(index_type_of(idx, "index"), [&](auto itag) {
                using I = decltype(itag);
                const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
                T* yp = out_ptr<T>(y, "y", {g.N, g.OH, g.OW, g.C});
                I* ip = idx.present ? out_ptr<I>(idx.d, "index", {g.N, g.OH, g.OW, g.C}) : nullptr;
                require_index_fits<I>(g.H * g.W, "index");
                py::gil_scoped_release nogil;
                cuda::stochastic_pool2d_forward<T, I>(xp, yp, ip, g, training, seed, stream_of(stream));
            });
        });
    }, py::arg("x"), py::arg("y"), py::arg("index"), py::arg("geom"), py::arg("training"), py::arg("seed"),
       STREAM_ARG, "Stochastic pooling; in training, index (or None) receives the chosen cell h*W + w.");

    m.def("stochastic_pool2d_backward_inference", [](const py::object& dyo, const py::object& xo,
                                                     const py::object& dxo, const py::tuple& geom,
                                                     std::uintptr_t stream) {
        const ConvGeom g = geom_from(geom);
        const Dev dy = dev_array(dyo, "dy"), x = dev_array(xo, "x"), dx = dev_array(dxo, "dx");
        dispatch_float(float_dtype(x, "x"), [&](auto tag) {
            using T = decltype(tag);
            const T* dyp = in_ptr<T>(dy, "dy", {g.N, g.OH, g.OW, g.C});
            const T* xp = in_ptr<T>(x, "x", {g.N, g.H, g.W, g.C});
            T* dxp = out_ptr<T>(dx, "dx", {g.N, g.H, g.W, g.C});
            py::gil_scoped_release nogil;
            cuda::stochastic_pool2d_backward_inference<T>(dyp, xp, dxp, g, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dx"), py::arg("geom"), STREAM_ARG,
       "Backward of inference-mode stochastic pooling.");
}

// ---- activations -------------------------------------------------------------------------------

template <class T>
T finite_param(double v, const char* name, bool nonnegative) {
    require(std::isfinite(v) && (!nonnegative || v >= 0), std::string(name) + " must be a finite number" +
                                                              (nonnegative ? " >= 0" : "") + ", got " +
                                                              std::to_string(v));
    return static_cast<T>(v);
}

std::pair<index_t, index_t> rows_cols(const Dev& a, const char* name) {
    require(a.ndim() >= 1, std::string(name) + " must have at least 1 dimension");
    const index_t cols = a.shape[a.ndim() - 1];
    index_t rows = 1;
    for (index_t i = 0; i + 1 < a.ndim(); ++i) rows *= a.shape[i];
    return {rows, cols};
}

void bind_activation(py::module_& m) {
    auto def_unary = [&m](const char* name, cuda::Unary op, const char* doc) {
        m.def(name, [op](const py::object& xo, const py::object& yo, std::uintptr_t stream) {
            const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                const index_t n = check_array<T>(x, "x", {});
                check_like<T>(y, "y", x, "x", true);
                py::gil_scoped_release nogil;
                cuda::unary_forward<T>(op, reinterpret_cast<const T*>(x.ptr), reinterpret_cast<T*>(y.ptr), n,
                                       stream_of(stream));
            });
        }, py::arg("x"), py::arg("y"), STREAM_ARG, doc);
    };
    auto def_binary = [&m](const char* name, const char* v_name, cuda::Binary op, const char* doc) {
        m.def(name, [op, v_name](const py::object& dyo, const py::object& vo, const py::object& dxo,
                                 std::uintptr_t stream) {
            const Dev dy = dev_array(dyo, "dy"), v = dev_array(vo, v_name), dx = dev_array(dxo, "dx");
            dispatch_float(float_dtype(v, v_name), [&](auto t) {
                using T = decltype(t);
                const index_t n = check_array<T>(v, v_name, {});
                check_like<T>(dy, "dy", v, v_name, false);
                check_like<T>(dx, "dx", v, v_name, true);
                py::gil_scoped_release nogil;
                cuda::binary_backward<T>(op, reinterpret_cast<const T*>(dy.ptr), reinterpret_cast<const T*>(v.ptr),
                                         reinterpret_cast<T*>(dx.ptr), n, stream_of(stream));
            });
        }, py::arg("dy"), py::arg(v_name), py::arg("dx"), STREAM_ARG, doc);
    };
    def_unary("relu_forward", cuda::Unary::relu, "y = relu(x) (y may be x)");
    def_binary("relu_backward", "v", cuda::Binary::relu, "dx = dy where v > 0 else 0; v = x or relu(x)");
    def_unary("sigmoid_forward", cuda::Unary::sigmoid, "y = sigmoid(x) (y may be x)");
    def_binary("sigmoid_backward", "x", cuda::Binary::sigmoid, "dx = dy sigmoid'(x)");
    def_binary("sigmoid_backward_from_output", "y", cuda::Binary::sigmoid_from_output,
               "dx = dy y (1 - y), y = sigmoid(x)");
    def_unary("tanh_forward", cuda::Unary::tanh, "y = tanh(x) (y may be x)");
    def_binary("tanh_backward", "x", cuda::Binary::tanh, "dx = dy (1 - tanh(x)^2)");
    def_binary("tanh_backward_from_output", "y", cuda::Binary::tanh_from_output, "dx = dy (1 - y^2), y = tanh(x)");

    auto def_alpha = [&m](const char* fwd_name, const char* bwd_name, bool nonnegative, cuda::Alpha op) {
        m.def(fwd_name, [=](const py::object& xo, const py::object& yo, double alpha, std::uintptr_t stream) {
            const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                const T a = finite_param<T>(alpha, "alpha", nonnegative);
                const index_t n = check_array<T>(x, "x", {});
                check_like<T>(y, "y", x, "x", true);
                py::gil_scoped_release nogil;
                cuda::alpha_forward<T>(op, reinterpret_cast<const T*>(x.ptr), reinterpret_cast<T*>(y.ptr), n, a,
                                       stream_of(stream));
            });
        }, py::arg("x"), py::arg("y"), py::arg("alpha"), STREAM_ARG);
        m.def(bwd_name, [=](const py::object& dyo, const py::object& xo, const py::object& dxo, double alpha,
                            std::uintptr_t stream) {
            const Dev dy = dev_array(dyo, "dy"), x = dev_array(xo, "x"), dx = dev_array(dxo, "dx");
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                const T a = finite_param<T>(alpha, "alpha", nonnegative);
                const index_t n = check_array<T>(x, "x", {});
                check_like<T>(dy, "dy", x, "x", false);
                check_like<T>(dx, "dx", x, "x", true);
                py::gil_scoped_release nogil;
                cuda::alpha_backward<T>(op, reinterpret_cast<const T*>(dy.ptr), reinterpret_cast<const T*>(x.ptr),
                                        reinterpret_cast<T*>(dx.ptr), n, a, stream_of(stream));
            });
        }, py::arg("dy"), py::arg("x"), py::arg("dx"), py::arg("alpha"), STREAM_ARG);
    };
    def_alpha("leaky_relu_forward", "leaky_relu_backward", true, cuda::Alpha::leaky_relu);
    def_alpha("elu_forward", "elu_backward", false, cuda::Alpha::elu);

    auto def_rows = [&m](const char* name, cuda::Rows op) {
        m.def(name, [op](const py::object& xo, const py::object& yo, std::uintptr_t stream) {
            const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
            dispatch_float(float_dtype(x, "x"), [&](auto t) {
                using T = decltype(t);
                check_array<T>(x, "x", {});
                check_like<T>(y, "y", x, "x", true);
                const auto [rows, cols] = rows_cols(x, "x");
                py::gil_scoped_release nogil;
                cuda::rows_forward<T>(op, reinterpret_cast<const T*>(x.ptr), reinterpret_cast<T*>(y.ptr), rows, cols,
                                      stream_of(stream));
            });
        }, py::arg("x"), py::arg("y"), STREAM_ARG, "normalizes each row (the last axis); y may be x");
    };
    auto def_rows_back = [&m](const char* name, const char* v_name, cuda::RowsBack op) {
        m.def(name, [op, v_name](const py::object& dyo, const py::object& vo, const py::object& dxo,
                                 std::uintptr_t stream) {
            const Dev dy = dev_array(dyo, "dy"), v = dev_array(vo, v_name), dx = dev_array(dxo, "dx");
            dispatch_float(float_dtype(v, v_name), [&](auto t) {
                using T = decltype(t);
                check_array<T>(v, v_name, {});
                check_like<T>(dy, "dy", v, v_name, false);
                check_like<T>(dx, "dx", v, v_name, true);
                const auto [rows, cols] = rows_cols(v, v_name);
                py::gil_scoped_release nogil;
                cuda::rows_backward<T>(op, reinterpret_cast<const T*>(dy.ptr), reinterpret_cast<const T*>(v.ptr),
                                       reinterpret_cast<T*>(dx.ptr), rows, cols, stream_of(stream));
            });
        }, py::arg("dy"), py::arg(v_name), py::arg("dx"), STREAM_ARG, "gradient over each row (the last axis)");
    };
    def_rows("softmax_forward", cuda::Rows::softmax);
    def_rows("log_softmax_forward", cuda::Rows::log_softmax);
    def_rows_back("softmax_backward", "x", cuda::RowsBack::softmax);
    def_rows_back("softmax_backward_from_output", "y", cuda::RowsBack::softmax_from_output);
    def_rows_back("log_softmax_backward", "x", cuda::RowsBack::log_softmax);
    def_rows_back("log_softmax_backward_from_output", "y", cuda::RowsBack::log_softmax_from_output);

    m.def("dropout_forward", [](const py::object& xo, const py::object& yo, double rate, std::uint64_t seed,
                                std::uintptr_t stream) {
        require(rate >= 0 && rate < 1, "rate must be in [0, 1), got " + std::to_string(rate));
        const Dev x = dev_array(xo, "x"), y = dev_array(yo, "y");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_array<T>(x, "x", {});
            check_like<T>(y, "y", x, "x", true);
            py::gil_scoped_release nogil;
            cuda::dropout_forward<T>(reinterpret_cast<const T*>(x.ptr), reinterpret_cast<T*>(y.ptr), n, rate, seed,
                                     stream_of(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("rate"), py::arg("seed"), STREAM_ARG,
       "y[i] = x[i] / (1 - rate) if uniform01(seed, i) >= rate else 0 (also the backward, on dy)");
}

// ---- batch normalization -----------------------------------------------------------------------

template <class T>
const T* rows_in(const Dev& a, const char* name, index_t& M, index_t& C) {
    const T* p = in_ptr<T>(a, name, {-1, -1});
    M = a.shape[0];
    C = a.shape[1];
    require(C > 0, std::string(name) + " must have at least one channel");
    return p;
}

template <class T>
const T* opt_in(const Opt& o, const char* name, index_t C) {
    return o.present ? in_ptr<T>(o.d, name, {C}) : nullptr;
}

void check_epsilon(double epsilon) {
    require(epsilon > 0 && std::isfinite(epsilon),
            "epsilon must be positive and finite, received epsilon=" + std::to_string(epsilon));
}

void bind_norm(py::module_& m) {
    m.def("batch_norm_batch_stats", [](const py::object& xo, double epsilon, const py::object& mo,
                                       const py::object& io, std::uintptr_t stream) {
        check_epsilon(epsilon);
        const Dev x = dev_array(xo, "x"), mean = dev_array(mo, "mean"), invstd = dev_array(io, "invstd");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            double* pm = out_ptr<double>(mean, "mean", {C});
            double* pi = out_ptr<double>(invstd, "invstd", {C});
            py::gil_scoped_release nogil;
            cuda::batch_norm_batch_stats<T>(px, M, C, epsilon, pm, pi, stream_of(stream));
        });
    }, py::arg("x"), py::arg("epsilon"), py::arg("mean"), py::arg("invstd"), STREAM_ARG);

    m.def("batch_norm_train_forward", [](const py::object& xo, const py::object& go, const py::object& bo,
                                         const py::object& mmo, const py::object& mvo, double momentum,
                                         double epsilon, const py::object& yo, const py::object& mo,
                                         const py::object& io, std::uintptr_t stream) {
        check_epsilon(epsilon);
        require(momentum >= 0 && momentum <= 1, "momentum must be in [0, 1], received momentum=" + std::to_string(momentum));
        const Dev x = dev_array(xo, "x"), mm = dev_array(mmo, "moving_mean"), mv = dev_array(mvo, "moving_var"),
                  y = dev_array(yo, "y"), mean = dev_array(mo, "mean"), invstd = dev_array(io, "invstd");
        const Opt gamma = opt(go, "gamma"), beta = opt(bo, "beta");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pb = opt_in<T>(beta, "beta", C);
            T* pmm = out_ptr<T>(mm, "moving_mean", {C});
            T* pmv = out_ptr<T>(mv, "moving_var", {C});
            T* py_ = out_ptr<T>(y, "y", {M, C});
            double* pm = out_ptr<double>(mean, "mean", {C});
            double* pi = out_ptr<double>(invstd, "invstd", {C});
            py::gil_scoped_release nogil;
            cuda::batch_norm_train_forward<T>(px, pg, pb, M, C, momentum, epsilon, py_, pm, pi, pmm, pmv,
                                              stream_of(stream));
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("momentum"), py::arg("epsilon"), py::arg("y"), py::arg("mean"), py::arg("invstd"), STREAM_ARG);

    m.def("batch_norm_inference_forward", [](const py::object& xo, const py::object& go, const py::object& bo,
                                             const py::object& mmo, const py::object& mvo, double epsilon,
                                             const py::object& yo, std::uintptr_t stream) {
        check_epsilon(epsilon);
        const Dev x = dev_array(xo, "x"), mm = dev_array(mmo, "moving_mean"), mv = dev_array(mvo, "moving_var"),
                  y = dev_array(yo, "y");
        const Opt gamma = opt(go, "gamma"), beta = opt(bo, "beta");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pb = opt_in<T>(beta, "beta", C);
            const T* pmm = in_ptr<T>(mm, "moving_mean", {C});
            const T* pmv = in_ptr<T>(mv, "moving_var", {C});
            T* py_ = out_ptr<T>(y, "y", {M, C});
            py::gil_scoped_release nogil;
            cuda::batch_norm_inference_forward<T>(px, pg, pb, pmm, pmv, M, C, epsilon, py_, stream_of(stream));
        });
    }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("y"), STREAM_ARG);

    m.def("batch_norm_train_backward", [](const py::object& dyo, const py::object& xo, const py::object& go,
                                          const py::object& mo, const py::object& io, const py::object& dxo,
                                          const py::object& dgo, const py::object& dbo, std::uintptr_t stream) {
        const Dev dy = dev_array(dyo, "dy"), x = dev_array(xo, "x"), mean = dev_array(mo, "mean"),
                  invstd = dev_array(io, "invstd"), dx = dev_array(dxo, "dx"), dg = dev_array(dgo, "dgamma"),
                  db = dev_array(dbo, "dbeta");
        const Opt gamma = opt(go, "gamma");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pdy = in_ptr<T>(dy, "dy", {M, C});
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const double* pm = in_ptr<double>(mean, "mean", {C});
            const double* pi = in_ptr<double>(invstd, "invstd", {C});
            T* pdx = out_ptr<T>(dx, "dx", {M, C});
            T* pdg = out_ptr<T>(dg, "dgamma", {C});
            T* pdb = out_ptr<T>(db, "dbeta", {C});
            py::gil_scoped_release nogil;
            cuda::batch_norm_train_backward<T>(pdy, px, pg, pm, pi, M, C, pdx, pdg, pdb, stream_of(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"), py::arg("invstd"), py::arg("dx"),
       py::arg("dgamma"), py::arg("dbeta"), STREAM_ARG);

    m.def("batch_norm_inference_backward", [](const py::object& dyo, const py::object& xo, const py::object& go,
                                              const py::object& mmo, const py::object& mvo, double epsilon,
                                              const py::object& dxo, const py::object& dgo, const py::object& dbo,
                                              std::uintptr_t stream) {
        check_epsilon(epsilon);
        const Dev dy = dev_array(dyo, "dy"), x = dev_array(xo, "x"), mm = dev_array(mmo, "moving_mean"),
                  mv = dev_array(mvo, "moving_var"), dx = dev_array(dxo, "dx"), dg = dev_array(dgo, "dgamma"),
                  db = dev_array(dbo, "dbeta");
        const Opt gamma = opt(go, "gamma");
        dispatch_float(float_dtype(x, "x"), [&](auto t) {
            using T = decltype(t);
            index_t M, C;
            const T* px = rows_in<T>(x, "x", M, C);
            const T* pdy = in_ptr<T>(dy, "dy", {M, C});
            const T* pg = opt_in<T>(gamma, "gamma", C);
            const T* pmm = in_ptr<T>(mm, "moving_mean", {C});
            const T* pmv = in_ptr<T>(mv, "moving_var", {C});
            T* pdx = out_ptr<T>(dx, "dx", {M, C});
            T* pdg = out_ptr<T>(dg, "dgamma", {C});
            T* pdb = out_ptr<T>(db, "dbeta", {C});
            py::gil_scoped_release nogil;
            cuda::batch_norm_inference_backward<T>(pdy, px, pg, pmm, pmv, M, C, epsilon, pdx, pdg, pdb,
                                                   stream_of(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("moving_mean"), py::arg("moving_var"),
       py::arg("epsilon"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), STREAM_ARG);
}

// ---- losses ------------------------------------------------------------------------------------

template <class T>
struct Target {
    const std::int64_t* labels = nullptr;
    const T* probs = nullptr;
};

template <class T>
Target<T> target_in(const Dev& labels, index_t N, index_t K) {
    Target<T> t;
    if (labels.typestr == "<i8")
        t.labels = in_ptr<std::int64_t>(labels, "labels", {N});
    else
        t.probs = in_ptr<T>(labels, "labels", {N, K});
    return t;
}

template <class T>
const T* logits_in(const Dev& logits, index_t& N, index_t& K) {
    const T* p = in_ptr<T>(logits, "logits", {-1, -1});
    N = logits.shape[0];
    K = logits.shape[1];
    require(K > 0, "logits must have at least one class (K > 0)");
    return p;
}

template <class T>
T* loss_out(const Dev& loss) {
    require(loss.ndim() == 0, "loss must be a 0-d array");
    return out_ptr<T>(loss, "loss", {});
}

void bind_loss(py::module_& m) {
    m.def("softmax_cross_entropy_forward", [](const py::object& lo, const py::object& labo, const py::object& ro,
                                              const py::object& losso, std::uintptr_t stream) {
        const Dev logits = dev_array(lo, "logits"), labels = dev_array(labo, "labels"),
                  row_loss = dev_array(ro, "row_loss"), loss = dev_array(losso, "loss");
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            double* pr = out_ptr<double>(row_loss, "row_loss", {N});
            T* pl = loss_out<T>(loss);
            py::gil_scoped_release nogil;
            cuda::softmax_cross_entropy_forward<T>(px, t.labels, t.probs, N, K, pr, pl, stream_of(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"), STREAM_ARG);

    m.def("softmax_cross_entropy_backward", [](const py::object& lo, const py::object& labo, double dloss,
                                               const py::object& dlo, std::uintptr_t stream) {
        const Dev logits = dev_array(lo, "logits"), labels = dev_array(labo, "labels"),
                  dlogits = dev_array(dlo, "dlogits");
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            T* pd = out_ptr<T>(dlogits, "dlogits", {N, K});
            py::gil_scoped_release nogil;
            cuda::softmax_cross_entropy_backward<T>(px, t.labels, t.probs, N, K, dloss, pd, stream_of(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("dloss"), py::arg("dlogits"), STREAM_ARG);

    m.def("softmax_cross_entropy_fused", [](const py::object& lo, const py::object& labo, const py::object& ro,
                                            const py::object& losso, const py::object& dlo, std::uintptr_t stream) {
        const Dev logits = dev_array(lo, "logits"), labels = dev_array(labo, "labels"),
                  row_loss = dev_array(ro, "row_loss"), loss = dev_array(losso, "loss"),
                  dlogits = dev_array(dlo, "dlogits");
        dispatch_float(float_dtype(logits, "logits"), [&](auto tag) {
            using T = decltype(tag);
            index_t N, K;
            const T* px = logits_in<T>(logits, N, K);
            const Target<T> t = target_in<T>(labels, N, K);
            double* pr = out_ptr<double>(row_loss, "row_loss", {N});
            T* pl = loss_out<T>(loss);
            T* pd = out_ptr<T>(dlogits, "dlogits", {N, K});
            py::gil_scoped_release nogil;
            cuda::softmax_cross_entropy_fused<T>(px, t.labels, t.probs, N, K, pr, pl, pd, stream_of(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"), py::arg("dlogits"), STREAM_ARG);
}

}  // namespace
}  // namespace cnnkit

#ifndef CNNKIT_VERSION
#define CNNKIT_VERSION "unknown"
#endif
#ifndef CNNKIT_CUDA_ARCHITECTURES
#define CNNKIT_CUDA_ARCHITECTURES "unknown"
#endif

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "cnnkit CUDA kernels (private: use cnnkit.ops with CuPy arrays)";
    m.def("build_info", [] {
        py::dict d;
        d["version"] = CNNKIT_VERSION;
        d["cuda_architectures"] = CNNKIT_CUDA_ARCHITECTURES;
        d["cuda_runtime_version"] = cnnkit::cuda::runtime_version();  // the statically linked runtime
        d["sync_checks"] = cnnkit::cuda::sync_checks();
        return d;
    });
    m.def("device_count", &cnnkit::cuda::device_count,
          "CUDA devices the statically linked runtime sees (0 without a driver; never raises).");
    m.def("get_sync_checks", &cnnkit::cuda::sync_checks);
    m.def("set_sync_checks", &cnnkit::cuda::set_sync_checks, py::arg("on"),
          "Synchronize after every launch so that a faulting kernel is named (slow; CNNKIT_CUDA_SYNC=1).");
    m.def("_launch_fault_selftest", [](std::uintptr_t stream) {
        cnnkit::cuda::launch_fault_selftest(reinterpret_cast<void*>(stream));
    }, py::kw_only(), py::arg("stream"), "Launch with an invalid configuration: must raise RuntimeError naming the kernel.");
    m.def("_memory_fault_selftest", [](std::uintptr_t stream) {
        cnnkit::cuda::memory_fault_selftest(reinterpret_cast<void*>(stream));
    }, py::kw_only(), py::arg("stream"), "Read an invalid address (kills the CUDA context: run it in a throwaway process).");
    cnnkit::bind_im2col(m);
    cnnkit::bind_pool(m);
    cnnkit::bind_activation(m);
    cnnkit::bind_norm(m);
    cnnkit::bind_loss(m);
}
