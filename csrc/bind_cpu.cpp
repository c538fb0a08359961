// bind_cpu.cpp: the private module cnnkit._core, the CPU kernels (csrc/cpu) bound to NumPy arrays.
// Each kernel family's bindings are the ones cnnkit._cuda has (bind_<family>.h, written once for
// both devices), instantiated here for the device Cpu; this file adds build information, the
// OpenMP thread count, and which copy of the SIMD loops the CPU runs.
#include <pybind11/pybind11.h>

#include <string>

#ifdef CNNKIT_OPENMP
#include <omp.h>
#endif

#include "bind_array.h"
#include "bind_kernels.h"
#include "cpu/kernels.h"
#include "cpu/simd.h"

namespace py = pybind11;

namespace cnnkit {
// The device of cnnkit._core for the bindings (bind_array.h): NumPy arrays, kernels that run on the
// calling thread's OpenMP team; `stream` is accepted (= 0) and ignored, so that a call written for
// cnnkit._cuda runs here unchanged.
struct Cpu {
    using Array = py::array;
    static ArrayView view(py::handle obj, const char* name) { return host_view(obj, name); }
    static cpu::Stream stream(std::uintptr_t) { return {}; }
    static py::arg_v stream_arg() { return py::arg("stream") = 0; }
};
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

// The CPU's features that matter to cnnkit's loops and to the BLAS under them, as the CPUID bits
// GCC's runtime reads (with the OS support in XCR0: AVX-512 state, AMX tile state). Empty where
// the compiler cannot ask (not GCC >= 12 on x86-64).
static py::dict cpu_features() {
    py::dict f;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    __builtin_cpu_init();
    f["avx2"] = __builtin_cpu_supports("avx2") != 0;
    f["fma"] = __builtin_cpu_supports("fma") != 0;
    f["avx512f"] = __builtin_cpu_supports("avx512f") != 0;
    f["x86-64-v3"] = __builtin_cpu_supports("x86-64-v3") != 0;
    f["x86-64-v4"] = __builtin_cpu_supports("x86-64-v4") != 0;
    f["amx-tile"] = __builtin_cpu_supports("amx-tile") != 0;
    f["amx-bf16"] = __builtin_cpu_supports("amx-bf16") != 0;
    f["amx-int8"] = __builtin_cpu_supports("amx-int8") != 0;
#endif
    return f;
}

// Which copy of the hot loops runs here: with function multiversioning (csrc/cpu/simd.h) the one the
// loader picked for this CPU, by the resolver's own test; otherwise the one the compiler was told to
// build (-march=native or the baseline).
static py::dict cpu_dispatch() {
    py::dict d;
    py::dict features = cpu_features();
    d["features"] = features;
#if defined(CNNKIT_SIMD_DISPATCH)
    d["mode"] = "picked at load time (target_clones: x86-64-v4, x86-64-v3, default)";
    if (features["x86-64-v4"].cast<bool>()) {
        d["path"] = "AVX-512";
    } else if (features["x86-64-v3"].cast<bool>()) {
        d["path"] = "AVX2+FMA";
    } else {
        d["path"] = "baseline";
    }
#else
#if defined(CNNKIT_NATIVE_BUILD)
    d["mode"] = "fixed at compile time (-march=native)";
#else
    d["mode"] = "fixed at compile time (no function multiversioning in this build)";
#endif
#if defined(__AVX512F__)
    d["path"] = "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
    d["path"] = "AVX2+FMA";
#elif defined(__ARM_NEON)
    d["path"] = "NEON";
#else
    d["path"] = "baseline";
#endif
#endif
    return d;
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "cnnkit CPU kernels (private: use cnnkit.ops)";
    cnnkit::register_alloc_error();
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
    m.def("cpu_dispatch", &cpu_dispatch,
          "{'path': 'AVX-512' | 'AVX2+FMA' | 'baseline' (or 'NEON'), 'mode': how it was chosen, "
          "'features': {'avx2', 'fma', 'avx512f', 'x86-64-v3', 'x86-64-v4', 'amx-tile', 'amx-bf16', "
          "'amx-int8': bool}}: the copy of the SIMD loops this CPU runs");
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
    cnnkit::bind_kernels<cnnkit::Cpu>(m);
}
