// bind_cpu.cpp: the private module cnnkit._core. Each kernel family registers its own functions
// (bind_<family>, defined at the bottom of csrc/cpu/<family>.cpp); this file adds build information.
#include <pybind11/pybind11.h>

#include "common.h"

#include <string>

#ifdef CNNKIT_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace cnnkit {
void bind_im2col(py::module_& m);
void bind_conv_direct(py::module_& m);
void bind_pool(py::module_& m);
void bind_activation(py::module_& m);
void bind_norm(py::module_& m);
void bind_loss(py::module_& m);
}  // namespace cnnkit

#ifndef CNNKIT_VERSION
#define CNNKIT_VERSION "unknown"
#endif
#ifndef CNNKIT_BUILD_TYPE
#define CNNKIT_BUILD_TYPE "unknown"
#endif

static std::string compiler_string() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
           std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

static py::list simd_flags() {
    py::list f;
#if defined(__SSE2__)
    f.append("SSE2");
#endif
#if defined(__SSE4_2__)
    f.append("SSE4.2");
#endif
#if defined(__AVX__)
    f.append("AVX");
#endif
#if defined(__AVX2__)
    f.append("AVX2");
#endif
#if defined(__FMA__)
    f.append("FMA");
#endif
#if defined(__AVX512F__)
    f.append("AVX512F");
#endif
#if defined(__ARM_NEON)
    f.append("NEON");
#endif
    return f;
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "cnnkit CPU kernels (private: use cnnkit.ops)";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const cnnkit::AllocError& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        }
    });
    m.def("build_info", [] {
        py::dict d;
        d["version"] = CNNKIT_VERSION;
        d["build_type"] = CNNKIT_BUILD_TYPE;
        d["compiler"] = compiler_string();
#ifdef CNNKIT_OPENMP
        d["openmp"] = true;
        d["openmp_version"] = _OPENMP;
#else
        d["openmp"] = false;
#endif
#ifdef CNNKIT_NATIVE_BUILD
        d["native_build"] = true;
#else
        d["native_build"] = false;
#endif
        d["simd"] = simd_flags();
        return d;
    });
    m.def("get_num_threads", [] {
#ifdef CNNKIT_OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    });
    m.def("set_num_threads", [](int n) {
        if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifdef CNNKIT_OPENMP
        omp_set_num_threads(n);
#endif
    });
    cnnkit::bind_im2col(m);
    cnnkit::bind_conv_direct(m);
    cnnkit::bind_pool(m);
    cnnkit::bind_activation(m);
    cnnkit::bind_norm(m);
    cnnkit::bind_loss(m);
}
