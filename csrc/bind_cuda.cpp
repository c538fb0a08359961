// bind_cuda.cpp: the private module cnnkit._cuda, the CUDA twin of cnnkit._core (bind_cpu.cpp).
// Every kernel function is bound by the same code as its CPU twin (bind_<family>.h), instantiated
// here for the device Cuda: the same name, arguments (in the same order) and checks, with the
// keyword `stream` required: the cudaStream_t to run on as an integer (cnnkit.ops passes
// cupy.cuda.get_current_stream().ptr, so the kernels are ordered with the CuPy work around them).
// Arrays are any objects exposing __cuda_array_interface__ (CuPy arrays): the binding reads the
// device pointer, dtype, shape and strides from it and checks them before any kernel sees the
// pointer, without touching the device. Nothing here touches the GPU at import time either (the
// CUDA runtime is linked statically and loads the driver on first use), so `import cnnkit._cuda`
// works on a machine without a GPU or a driver.
// This file is plain C++ (no CUDA headers); the kernels' host entry points are in cuda/kernels.h.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bind_array.h"
#include "bind_kernels.h"
#include "cuda/kernels.h"

namespace py = pybind11;

namespace cnnkit {
namespace {
// Kernel scratch from CuPy's allocator (cuda/kernels.h ScratchAllocator). The kernels run with the
// GIL released; each allocation and release takes it back for the call into CuPy. g_alloc is
// cupy.cuda.alloc, kept for the life of the process (never destroyed: the interpreter may be
// finalizing when static destructors run).
py::object* g_alloc = nullptr;

void* cupy_alloc(std::size_t bytes, void** handle, const char* what) {
    py::gil_scoped_acquire gil;
    try {
        py::object mem = (*g_alloc)(bytes);  // a cupy.cuda.MemoryPointer on the current device and stream
        void* ptr = reinterpret_cast<void*>(mem.attr("ptr").cast<std::uintptr_t>());
        *handle = mem.release().ptr();  // our reference, dropped by cupy_release
        return ptr;
    } catch (py::error_already_set& e) {
        if (e.matches(PyExc_MemoryError))  // CuPy's OutOfMemoryError, after freeing its cache
            throw AllocError(std::string(what) + ": cannot allocate " + std::to_string(bytes) +
                             " bytes of scratch (" + e.what() + ")");
        throw;
    }
}

void cupy_release(void* handle) {
    py::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(handle));  // the block goes back to CuPy's pool, stream-ordered
}
}  // namespace

// The device of cnnkit._cuda for the bindings (bind_array.h): objects exposing
// __cuda_array_interface__, kernels queued on the stream passed by keyword (cnnkit.ops always passes it).
struct Cuda {
    using Array = py::object;
    static ArrayView view(py::handle obj, const char* name) { return cuda_view(obj, name); }
    static cuda::Stream stream(std::uintptr_t s) { return {reinterpret_cast<void*>(s)}; }
    static py::arg stream_arg() { return py::arg("stream"); }
};
}  // namespace cnnkit

#ifndef CNNKIT_VERSION
#define CNNKIT_VERSION "unknown"
#endif
#ifndef CNNKIT_CUDA_ARCHITECTURES
#define CNNKIT_CUDA_ARCHITECTURES "unknown"
#endif

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "cnnkit CUDA kernels (private: use cnnkit.ops with CuPy arrays)";
    cnnkit::register_alloc_error();
    m.def("build_info", [] {
        py::dict d;
        d["version"] = CNNKIT_VERSION;
        d["cuda_architectures"] = CNNKIT_CUDA_ARCHITECTURES;
        d["cuda_runtime_version"] = cnnkit::cuda::runtime_version();  // the statically linked runtime
        d["sync_checks"] = cnnkit::cuda::sync_checks();
        return d;
    });
    m.def("driver_version", &cnnkit::cuda::driver_version,
          "The latest CUDA version the installed NVIDIA driver supports, as 1000 * major + 10 * minor "
          "(0 without a driver; never raises).");
    m.def("device_count", &cnnkit::cuda::device_count,
          "CUDA devices the statically linked runtime sees (0 without a driver; never raises).");
    m.def("get_sync_checks", &cnnkit::cuda::sync_checks);
    m.def("set_sync_checks", &cnnkit::cuda::set_sync_checks, py::arg("on"),
          "Synchronize after every launch so that a faulting kernel is named (slow; CNNKIT_CUDA_SYNC=1).");
    m.def("set_scratch_allocator", [](py::object alloc) {
        if (alloc.is_none()) {
            cnnkit::cuda::set_scratch_allocator({});
            return;
        }
        if (!PyCallable_Check(alloc.ptr())) throw py::type_error("set_scratch_allocator needs a callable or None");
        if (cnnkit::g_alloc == nullptr) cnnkit::g_alloc = new py::object();
        *cnnkit::g_alloc = alloc;
        cnnkit::cuda::set_scratch_allocator({&cnnkit::cupy_alloc, &cnnkit::cupy_release});
    }, py::arg("alloc"),
          "Take kernel scratch from alloc(nbytes) -> an object with .ptr holding the block while it lives "
          "(cnnkit.ops installs cupy.cuda.alloc); None goes back to cudaMallocAsync.");
    m.def("has_scratch_allocator", [] { return cnnkit::cuda::scratch_allocator().alloc != nullptr; });
    using cnnkit::Cuda;
    m.def("_launch_fault_selftest", [](std::uintptr_t stream) {
        cnnkit::cuda::launch_fault_selftest(Cuda::stream(stream));
    }, py::kw_only(), py::arg("stream"), "Launch with an invalid configuration: must raise RuntimeError naming the kernel.");
    m.def("_memory_fault_selftest", [](std::uintptr_t stream) {
        cnnkit::cuda::memory_fault_selftest(Cuda::stream(stream));
    }, py::kw_only(), py::arg("stream"), "Read an invalid address (kills the CUDA context: run it in a throwaway process).");
    m.def("_scratch_fault_selftest", [](std::uintptr_t stream) {
        cnnkit::cuda::scratch_fault_selftest(Cuda::stream(stream));
    }, py::kw_only(), py::arg("stream"), "Ask for 2^62 bytes of scratch: must raise MemoryError naming selftest_scratch.");
    cnnkit::bind_kernels<Cuda>(m);
}
