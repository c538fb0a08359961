// bind_array.h: the array view and the argument checks of every binding, on both devices.
// An array argument is seen as an ArrayView: its name, where its data is, its shape, its element
// type as a typestr ("<f4", as NumPy's dtype.str and __cuda_array_interface__ spell it), and whether
// it is C-contiguous and writable. host_view builds one from a NumPy array (cnnkit._core),
// cuda_view from an object's __cuda_array_interface__ (cnnkit._cuda: CuPy arrays); everything after
// that is one code path for both: dtype, shape (-1 matches any extent), C-contiguity, alignment,
// writability, the window geometry, finite parameters and index ranges. A refused call raises a
// Python exception naming the argument: TypeError for a wrong type or dtype, ValueError otherwise.
// The Python layer (cnnkit.ops) validates first and allocates every output; these checks make sure
// that no kernel, whoever calls it, is handed a buffer it would read or write out of bounds.
//
// Each kernel family's bindings are written once, as template <class D> void bind_<family>(m) in
// bind_<family>.h, D being the device: Cpu (bind_cpu.cpp) or Cuda (bind_cuda.cpp), with
//   D::Array              the type of a required array parameter (py::array on the CPU, so that
//                         pybind11 refuses anything else; py::object on the GPU)
//   D::view(obj, name)    the ArrayView of an array argument (TypeError if it is not the device's)
//   D::stream(s)          the kernels' last argument, cpu::Stream or cuda::Stream, from the
//                         keyword-only `stream` (an int: the cudaStream_t; ignored on the CPU)
//   D::stream_arg()       that keyword's declaration: required on the GPU, = 0 on the CPU.
// A binding checks its arguments, releases the GIL and calls the kernel unqualified: the type of
// that last argument makes argument-dependent lookup find the device's kernel (cpu::im2col or
// cuda::im2col), both declared by kernels.inc with the same arguments.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace cnnkit {
namespace py = pybind11;

struct ArrayView {
    const char* name = "";  // the argument's name, for messages
    void* data = nullptr;
    std::vector<index_t> shape;
    std::string typestr;    // byte order, kind, item size: "<f4", "<i8", "|b1"
    bool present = true;    // false: an optional argument given as None (see optional_view)
    bool contiguous = true;
    bool writable = true;
    index_t size = 1;
    index_t ndim() const { return static_cast<index_t>(shape.size()); }
};

// AllocError (common.h: a scratch allocation that failed) becomes MemoryError; once per module.
inline void register_alloc_error() {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const AllocError& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        }
    });
}

inline std::string type_name(py::handle obj) {
    return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

// NumPy's name for a typestr ("<f4" -> "float32"); the typestr itself for anything unusual.
inline std::string dtype_name(const std::string& typestr) {
    if (typestr.size() < 3 || (typestr[0] != '<' && typestr[0] != '|')) return typestr;
    const std::string bits = std::to_string(8 * std::stoi(typestr.substr(2)));
    switch (typestr[1]) {
        case 'f': return "float" + bits;
        case 'i': return "int" + bits;
        case 'u': return "uint" + bits;
        case 'c': return "complex" + bits;
        case 'b': return "bool";
        default: return typestr;
    }
}

template <class T>
const char* typestr_of();
template <>
inline const char* typestr_of<float>() { return "<f4"; }
template <>
inline const char* typestr_of<double>() { return "<f8"; }
template <>
inline const char* typestr_of<std::int32_t>() { return "<i4"; }
template <>
inline const char* typestr_of<std::int64_t>() { return "<i8"; }

// A NumPy array. The data pointer is not copied or converted: a non-array is a TypeError, whatever
// NumPy could make of it.
inline ArrayView host_view(py::handle obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + " must be a NumPy array, got " + type_name(obj));
    const auto a = py::reinterpret_borrow<py::array>(obj);
    ArrayView v;
    v.name = name;
    v.data = const_cast<void*>(a.data());
    v.shape.assign(a.shape(), a.shape() + a.ndim());
    const py::dtype dt = a.dtype();
    const char order = dt.byteorder() == '=' ? '<' : dt.byteorder();  // cnnkit builds for little-endian hosts
    v.typestr = std::string(1, order) + dt.kind() + std::to_string(dt.itemsize());
    v.contiguous = (a.flags() & py::array::c_style) != 0;
    v.writable = a.writeable();
    v.size = static_cast<index_t>(a.size());
    return v;
}

// An object exposing __cuda_array_interface__ (version 2 or 3: shape, typestr, data = (pointer,
// read-only), strides or None for C order); nothing here touches the device.
inline ArrayView cuda_view(py::handle obj, const char* name) {
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw py::type_error(std::string(name) + " must be a CuPy array (GPU memory), got " + type_name(obj));
    const py::dict cai = obj.attr("__cuda_array_interface__");
    ArrayView v;
    v.name = name;
    for (const auto& s : cai["shape"].cast<py::tuple>()) {
        v.shape.push_back(s.cast<index_t>());
        v.size *= v.shape.back();
    }
    v.typestr = cai["typestr"].cast<std::string>();
    const py::tuple data = cai["data"].cast<py::tuple>();
    v.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
    v.writable = !data[1].cast<bool>();
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        const py::tuple strides = cai["strides"].cast<py::tuple>();
        index_t expect = v.typestr.size() > 2 ? std::stoll(v.typestr.substr(2)) : 1;  // the item size
        for (index_t i = v.ndim() - 1; i >= 0; --i) {
            if (v.shape[i] > 1 && strides[i].cast<index_t>() != expect) v.contiguous = false;
            expect *= v.shape[i];
        }
    }
    return v;
}

// An argument that may be None: an absent view (present = false, no data) for None.
template <class D>
ArrayView optional_view(const py::object& obj, const char* name) {
    if (!obj.is_none()) return D::view(obj, name);
    ArrayView v;
    v.name = name;
    v.present = false;
    return v;
}

inline std::string shape_str(const std::vector<index_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

// An expected shape, up to 4 extents (-1 matches any extent); no extents: any shape.
struct Shape {
    index_t dims[4] = {};
    size_t n = 0;
    Shape(std::initializer_list<index_t> extents) : n(std::min<size_t>(extents.size(), 4)) {
        std::copy_n(extents.begin(), n, dims);
    }
};

// Checks that a has element type T, is C-contiguous, aligned for T and (when asked) writable, and
// has the expected shape. Returns the element count.
template <class T>
index_t check_array(const ArrayView& a, const Shape& shape, bool writable = false) {
    const std::string name = a.name;
    if (a.typestr != typestr_of<T>())
        throw py::type_error(name + " has dtype " + dtype_name(a.typestr) + ", expected " +
                             dtype_name(typestr_of<T>()));
    if (!a.contiguous) throw std::invalid_argument(name + " must be C-contiguous");
    // A T* to an address that is not a multiple of alignof(T) is undefined behaviour (and the
    // vectorizer's peeled loops assume it is); ops copies such arrays before they get here.
    if (reinterpret_cast<std::uintptr_t>(a.data) % alignof(T) != 0)
        throw std::invalid_argument(name + " must be aligned (its address a multiple of " +
                                    std::to_string(alignof(T)) + " bytes)");
    if (writable && !a.writable) throw std::invalid_argument(name + " must be writable");
    if (shape.n == 0) return a.size;
    bool ok = a.shape.size() == shape.n;
    for (size_t i = 0; ok && i < shape.n; ++i) ok = shape.dims[i] < 0 || a.shape[i] == shape.dims[i];
    if (!ok) {
        std::string want = "(";
        for (size_t i = 0; i < shape.n; ++i)
            want += (i ? ", " : "") + (shape.dims[i] < 0 ? std::string("*") : std::to_string(shape.dims[i]));
        throw std::invalid_argument(name + " has shape " + shape_str(a.shape) + ", expected " + want + ")");
    }
    return a.size;
}

template <class T>
const T* in_ptr(const ArrayView& a, const Shape& shape) {
    check_array<T>(a, shape);
    return static_cast<const T*>(a.data);
}

template <class T>
T* out_ptr(const ArrayView& a, const Shape& shape) {
    check_array<T>(a, shape, true);
    return static_cast<T*>(a.data);
}

// in_ptr / out_ptr of an optional argument: nullptr when it is absent.
template <class T>
const T* opt_in(const ArrayView& a, const Shape& shape) {
    return a.present ? in_ptr<T>(a, shape) : nullptr;
}
template <class T>
T* opt_out(const ArrayView& a, const Shape& shape) {
    return a.present ? out_ptr<T>(a, shape) : nullptr;
}

// a has element type T, is C-contiguous and aligned (and writable when asked) and has the shape of ref.
template <class T>
index_t check_like(const ArrayView& a, const ArrayView& ref, bool writable) {
    const index_t n = check_array<T>(a, {}, writable);
    if (a.shape != ref.shape)
        throw std::invalid_argument(std::string(a.name) + " has shape " + shape_str(a.shape) + " but " + ref.name +
                                    " has shape " + shape_str(ref.shape));
    return n;
}

// x (any shape) read and y written elementwise: y has x's shape. Returns the element count.
template <class T>
index_t check_map(const ArrayView& x, const ArrayView& y) {
    const index_t n = check_array<T>(x, {});
    check_like<T>(y, x, true);
    return n;
}

// Its gradient: dy read and dx written, both of the shape of v (the forward's input or output).
template <class T>
index_t check_grad_map(const ArrayView& dy, const ArrayView& v, const ArrayView& dx) {
    const index_t n = check_array<T>(v, {});
    check_like<T>(dy, v, false);
    check_like<T>(dx, v, true);
    return n;
}

// (rows, cols) of an array normalized over its last axis.
inline std::pair<index_t, index_t> rows_cols(const ArrayView& a) {
    require(a.ndim() >= 1, std::string(a.name) + " must have at least 1 dimension");
    const index_t cols = a.shape.back();
    index_t rows = 1;
    for (index_t i = 0; i + 1 < a.ndim(); ++i) rows *= a.shape[i];
    return {rows, cols};
}

// a as a (rows, cols) matrix of element type T with at least one column (a `what`): sets rows, cols.
template <class T>
const T* matrix_in(const ArrayView& a, const char* what, index_t& rows, index_t& cols) {
    const T* p = in_ptr<T>(a, {-1, -1});
    rows = a.shape[0];
    cols = a.shape[1];
    require(cols > 0, std::string(a.name) + " must have at least one " + what);
    return p;
}

// ---- dtype dispatch ----

enum class DType { f32, f64 };
enum class IType { i32, i64 };

// The float dtype of a, or a TypeError naming it.
inline DType float_dtype(const ArrayView& a) {
    if (a.typestr == typestr_of<float>()) return DType::f32;
    if (a.typestr == typestr_of<double>()) return DType::f64;
    throw py::type_error(std::string(a.name) + " must be float32 or float64, got " + dtype_name(a.typestr));
}

// The index dtype of a (int64 when a is absent), or a TypeError naming it.
inline IType index_dtype(const ArrayView& a) {
    if (!a.present || a.typestr == typestr_of<std::int64_t>()) return IType::i64;
    if (a.typestr == typestr_of<std::int32_t>()) return IType::i32;
    throw py::type_error(std::string(a.name) + " must be int32 or int64, got " + dtype_name(a.typestr));
}

// Calls f(T{}) with T = float or double according to the dtype.
template <class F>
auto dispatch_float(DType dt, F&& f) {
    if (dt == DType::f32) return f(float{});
    return f(double{});
}

// Calls f(T{}, I{}) with T = float or double for the dtype of x, I = int32_t or int64_t for that
// of the index array idx (int64_t where it is absent).
template <class F>
void dispatch_float_index(const ArrayView& x, const ArrayView& idx, F&& f) {
    dispatch_float(float_dtype(x), [&](auto t) {
        if (index_dtype(idx) == IType::i32)
            f(t, std::int32_t{});
        else
            f(t, std::int64_t{});
    });
}

// A flat in-image index h*W + w (pixels of them) must fit the index type I of the array `name`.
template <class I>
void require_index_fits(index_t pixels, const char* name) {
    require(pixels - 1 <= static_cast<index_t>(std::numeric_limits<I>::max()),
            std::string(name) + " must be int64 for images of more than 2**31 - 1 pixels");
}

// ---- scalar arguments ----

// A geometry from the 14-tuple (N, H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR) that
// cnnkit.ops._op_args.geometry builds (the Geometry named tuple); an entry that is not an int, or
// does not fit 64 bits, is a ValueError like any other bad geometry.
inline ConvGeom geom_from(const py::tuple& t) {
    if (t.size() != 14) throw std::invalid_argument("geometry must be a 14-tuple, got " + std::to_string(t.size()));
    index_t v[14];
    for (size_t i = 0; i < 14; ++i) {
        try {
            v[i] = t[i].cast<index_t>();
        } catch (const py::cast_error&) {  // not an int, or beyond 64 bits
            throw std::invalid_argument("geometry entries must be integers that fit in 64 bits, got " +
                                        std::string(py::repr(t[i])));
        }
    }
    return make_geom(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]);
}

// The shapes a geometry gives: the input image (N, H, W, C) and the pooled map (N, OH, OW, C).
inline Shape image_shape(const ConvGeom& g) { return {g.N, g.H, g.W, g.C}; }
inline Shape pooled_shape(const ConvGeom& g) { return {g.N, g.OH, g.OW, g.C}; }

// A finite scalar (and >= 0 when asked) as T.
template <class T>
T finite_param(double v, const char* name, bool nonnegative) {
    require(std::isfinite(v) && (!nonnegative || v >= 0), std::string(name) + " must be a finite number" +
                                                              (nonnegative ? " >= 0" : "") + ", got " +
                                                              std::to_string(v));
    return static_cast<T>(v);
}

inline void check_epsilon(double epsilon) {
    require(epsilon > 0 && std::isfinite(epsilon),
            "epsilon must be positive and finite, received epsilon=" + std::to_string(epsilon));
}

inline void check_momentum(double momentum) {
    require(momentum >= 0 && momentum <= 1, "momentum must be in [0, 1], received momentum=" + std::to_string(momentum));
}

inline void check_rate(double rate) {
    require(rate >= 0 && rate < 1, "rate must be in [0, 1), got " + std::to_string(rate));
}

}  // namespace cnnkit
