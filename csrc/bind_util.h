// bind_util.h: argument checks shared by the pybind11 bindings of the CPU kernels.
// The Python layer (cnnkit.ops) validates first and allocates every output; the bindings check again
// (dtype, rank, shape, C-contiguity, writability) so that no kernel can be handed a buffer it would
// read or write out of bounds, then release the GIL around the kernel.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "common.h"

namespace cnnkit {
namespace py = pybind11;

enum class DType { f32, f64 };

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// The float dtype of a, or a TypeError naming the argument.
inline DType float_dtype(const py::array& a, const char* name) {
    if (a.dtype().is(py::dtype::of<float>())) return DType::f32;
    if (a.dtype().is(py::dtype::of<double>())) return DType::f64;
    throw py::type_error(std::string(name) + " must be float32 or float64, got " +
                         std::string(py::str(a.dtype())));
}

// Checks a is C-contiguous and aligned, of element type T and, when shape is non-empty, of exactly that shape
// (-1 matches any extent). Returns the element count.
template <class T>
index_t check_array(const py::array& a, const char* name, std::initializer_list<index_t> shape,
                    bool writable = false) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) +
                             ", expected " + std::string(py::str(py::dtype::of<T>())));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    // A T* to an address that is not a multiple of alignof(T) is undefined behaviour (and the
    // vectorizer's peeled loops assume it is); ops copies such arrays before they get here.
    if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw std::invalid_argument(std::string(name) + " must be aligned (its address a multiple of " +
                                    std::to_string(sizeof(T)) + " bytes)");
    if (writable && !a.writeable())
        throw std::invalid_argument(std::string(name) + " must be writable");
    if (shape.size() != 0) {
        bool ok = static_cast<size_t>(a.ndim()) == shape.size();
        size_t i = 0;
        for (index_t s : shape) {
            if (ok && s >= 0 && a.shape(i) != s) ok = false;
            ++i;
        }
        if (!ok) {
            std::string want = "(";
            i = 0;
            for (index_t s : shape) want += (i++ ? ", " : "") + (s < 0 ? std::string("*") : std::to_string(s));
            throw std::invalid_argument(std::string(name) + " has shape " + shape_str(a) +
                                        ", expected " + want + ")");
        }
    }
    return static_cast<index_t>(a.size());
}

template <class T>
const T* in_ptr(const py::array& a, const char* name, std::initializer_list<index_t> shape) {
    check_array<T>(a, name, shape);
    return static_cast<const T*>(a.data());
}

template <class T>
T* out_ptr(py::array& a, const char* name, std::initializer_list<index_t> shape) {
    check_array<T>(a, name, shape, true);
    return static_cast<T*>(a.mutable_data());
}

// A geometry from the 14-tuple (N, H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR) that
// cnnkit.ops._backend.geometry builds.
inline ConvGeom geom_from(const py::tuple& t) {
    if (t.size() != 14) throw std::invalid_argument("geometry must be a 14-tuple");
    index_t v[14];
    for (size_t i = 0; i < 14; ++i) {
        try {
            v[i] = t[i].cast<index_t>();
        } catch (const py::cast_error&) {  // not an int, or beyond 64 bits
            throw std::invalid_argument("geometry entries must be integers that fit in 64 bits");
        }
    }
    return make_geom(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
                     v[12], v[13]);
}

// Calls f(T{}) with T = float or double according to the dtype.
template <class F>
auto dispatch_float(DType dt, F&& f) {
    if (dt == DType::f32) return f(float{});
    return f(double{});
}

}  // namespace cnnkit
