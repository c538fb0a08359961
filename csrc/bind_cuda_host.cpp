// bind_cuda_host.cpp: the private, test-only module cnnkit._cuda_host. It runs the per-element work
// of the CUDA kernels (the __host__ __device__ functions in csrc/cuda/*.cuh, compiled here by the
// C++ compiler, CNNKIT_HD being plain `inline`) on the CPU, one call per element or thread of the
// grid the launcher in csrc/cuda/*.cu would start, in the index type the launcher would pick
// (csrc/cuda_host/*.cpp). So CI, which has no GPU, checks the CUDA kernels' index arithmetic,
// padding rules and 32/64-bit choice against the NumPy reference (tests/test_cuda_host.py, marked
// cuda_host). Built by every `pip install .` from C++ only (no nvcc, no CUDA headers). Not an API:
// plain single-threaded loops.
//
// The functions are bound by the bindings of cnnkit._core and cnnkit._cuda (bind_<family>.h), so
// they take the same arguments with the same checks, NumPy arrays, except that the keyword-only
// `stream` is `index_bits` here: 0 (default) indexes as the launcher would, 64 forces 64-bit indices,
// 32 forces 32-bit ones (ValueError where the launcher would use 64). last_index_bits() says which
// the last call used. Block reductions and shared-memory or warp-shuffle code stay device-only; where
// a kernel combines its threads' results in shared memory, the loop here does it in the same order.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bind_array.h"
#include "bind_conv_direct.h"
#include "bind_im2col.h"
#include "bind_pool.h"
#include "cuda_host/kernels.h"

namespace py = pybind11;

namespace cnnkit {

namespace cuda_host {
namespace {
thread_local int g_last_bits = 0;
}
int last_index_bits() { return g_last_bits; }
void set_last_index_bits(int bits) { g_last_bits = bits; }
}  // namespace cuda_host

// The device of cnnkit._cuda_host for the bindings (bind_array.h): NumPy arrays, and the keyword
// index_bits in the place of the stream.
struct CudaHost {
    using Array = py::array;
    static ArrayView view(py::handle obj, const char* name) { return host_view(obj, name); }
    static cuda_host::Stream stream(std::uintptr_t bits) { return {bits}; }
    static py::arg_v stream_arg() { return py::arg("index_bits") = 0; }
};

}  // namespace cnnkit

PYBIND11_MODULE(_cuda_host, m) {
    m.doc() = "cnnkit, test-only: the CUDA kernels' per-element functions run on the CPU (tests/test_cuda_host.py)";
    m.def("last_index_bits", &cnnkit::cuda_host::last_index_bits,
          "The index bits (32 or 64) the last call on this thread used.");
    using cnnkit::CudaHost;
    cnnkit::bind_im2col<CudaHost>(m);
    cnnkit::bind_conv_direct<CudaHost>(m);
    cnnkit::bind_pool<CudaHost>(m);
}
