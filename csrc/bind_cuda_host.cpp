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

#include "bind_activation.h"
#include "bind_array.h"
#include "bind_bias.h"
#include "bind_conv_direct.h"
#include "bind_im2col.h"
#include "bind_optimizer.h"
#include "bind_pool.h"
#include "cuda/norm.cuh"
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

// Batch normalization's elementwise passes (cuda/norm.cuh; the reductions that make their
// coefficients are device-only): out (M, C) from a (M, C), b (M, C, only for train_dx) and the
// coefficients coef (4, C) as norm.cu lays them out.
enum class NormPass { normalize, train_dx, scale_dx };
template <NormPass P>
void bind_norm_pass(py::module_& m, const char* name, const char* doc) {
    m.def(name, [](const py::array& a_, const py::object& b_, const py::array& coef_, const py::array& out_,
                   std::uintptr_t bits) {
        const ArrayView a = host_view(a_, "a");
        dispatch_float(float_dtype(a), [&](auto t) {
            using T = decltype(t);
            index_t M = 0, C = 0;
            const T* ap = matrix_in<T>(a, "channel", M, C);
            const T* bp = P == NormPass::train_dx ? in_ptr<T>(host_view(b_, "b"), {M, C}) : nullptr;
            const T* cp = in_ptr<T>(host_view(coef_, "coef"), {cuda::kCoefRows, C});
            T* op = out_ptr<T>(host_view(out_, "out"), {M, C});
            const index_t count = M * C;
            cuda_host::with_index_type({bits}, cuda::norm_elementwise_index32(M, C), "batch norm", [&](auto tag) {
                using I = decltype(tag);
                for (I e = 0; e < I(count); ++e) {
                    if (P == NormPass::normalize) cuda::normalize_element(ap, cp, op, I(C), e);
                    if (P == NormPass::train_dx) cuda::train_dx_element(ap, bp, cp, op, I(C), e);
                    if (P == NormPass::scale_dx) cuda::scale_dx_element(ap, cp, op, I(C), e);
                }
            });
        });
    }, py::arg("a"), py::arg("b"), py::arg("coef"), py::arg("out"), py::kw_only(), py::arg("index_bits") = 0, doc);
}

}  // namespace cnnkit

PYBIND11_MODULE(_cuda_host, m) {
    m.doc() = "cnnkit, test-only: the CUDA kernels' per-element functions run on the CPU (tests/test_cuda_host.py)";
    m.def("last_index_bits", &cnnkit::cuda_host::last_index_bits,
          "The index bits (32 or 64) the last call on this thread used.");
    using cnnkit::CudaHost;
    cnnkit::bind_im2col<CudaHost>(m);
    cnnkit::bind_bias<CudaHost>(m);
    cnnkit::bind_conv_direct<CudaHost>(m);
    cnnkit::bind_elementwise_activation<CudaHost>(m);
    cnnkit::bind_pool<CudaHost>(m);
    cnnkit::bind_optimizer<CudaHost>(m);
    using cnnkit::NormPass;
    cnnkit::bind_norm_pass<NormPass::normalize>(
        m, "batch_norm_normalize", "out = (a - coef[0]) * coef[1] + coef[2] (normalize_kernel); b unused.");
    cnnkit::bind_norm_pass<NormPass::train_dx>(
        m, "batch_norm_train_dx",
        "out = coef[1] * (a - coef[2] - (b - coef[0]) * coef[3]) (train_dx_kernel): a = dy, b = x.");
    cnnkit::bind_norm_pass<NormPass::scale_dx>(
        m, "batch_norm_scale_dx", "out = coef[3] * a (scale_dx_kernel); b unused.");
    m.def("batch_norm_index_bits", [](cnnkit::index_t M, cnnkit::index_t C) {
        return cnnkit::cuda::norm_elementwise_index32(M, C) ? 32 : 64;
    }, py::arg("M"), py::arg("C"), "The index bits norm.cu's elementwise passes use for an (M, C) tensor.");
}
