// bind_cuda_host.cpp: the private, test-only module cnnkit._cuda_host. It runs the per-element work
// of the CUDA kernels (the __host__ __device__ functions in csrc/cuda/*.cuh, compiled here by the
// C++ compiler with CNNKIT_HD defined as plain `inline`) on the CPU, one call per element or thread
// of the grid the launcher in csrc/cuda/*.cu would start, in the index type the launcher would pick.
// So CI, which has no GPU, checks the CUDA kernels' index arithmetic, padding and 32/64-bit choice
// against the NumPy reference (tests/test_cuda_host.py, marked cuda_host). Built by every
// `pip install .` (C++ only: no nvcc, no CUDA headers); not an API: slow, single-threaded loops.
//
// Each function takes the arguments of its twin in cnnkit._core / cnnkit._cuda (same names, same
// checks, from bind_array.h), NumPy arrays, and the keyword index_bits: 0 uses the index type the
// launcher would (32 or 64 bits), 64 forces 64-bit indices, 32 forces 32-bit ones and is refused
// (ValueError) where the launcher would index in 64 bits. Each returns the index bits it used.
// Block reductions and shared-memory or warp-shuffle code stay device-only; where a kernel combines
// its threads' results (the direct weight gradient's lanes and chunks), the loop here does it in
// the kernel's order.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bind_array.h"
#include "bind_im2col.h"  // geom_with_rows
#include "cuda/conv_direct.cuh"
#include "cuda/im2col.cuh"

namespace py = pybind11;

namespace cnnkit {
namespace {

using cuda::Geom;

// Runs f(int32_t{}) or f(index_t{}) as asked (see the header); returns the bits used.
template <class F>
int with_index_bits(int bits, bool launcher32, const char* what, F&& f) {
    require(bits == 0 || bits == 32 || bits == 64, "index_bits must be 0, 32 or 64, got " + std::to_string(bits));
    require(bits != 32 || launcher32,
            std::string(what) + ": index_bits=32 refused: the launcher indexes this call in 64 bits");
    const bool use32 = bits == 0 ? launcher32 : bits == 32;
    cuda::with_index_type(use32, f);
    return use32 ? 32 : 64;
}

py::arg_v index_bits_arg() { return py::arg("index_bits") = 0; }

void bind(py::module_& m) {
    m.def("im2col", [](const py::array& x_, const py::array& col_, const py::tuple& geom, index_t row0,
                       index_t row1, int bits) {
        const ConvGeom g = geom_with_rows(geom, row0, row1);
        const ArrayView x = host_view(x_, "x");
        return dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            T* cp = out_ptr<T>(host_view(col_, "col"), {row1 - row0, g.patch_size()});
            const index_t count = cuda::im2col_count(g, row0, row1);
            return with_index_bits(bits, cuda::im2col_index32(g, row0, row1), "im2col", [&](auto tag) {
                using I = decltype(tag);
                const Geom<I> gi(g);
                for (I e = 0; e < I(count); ++e) cuda::im2col_element(xp, cp, gi, I(row0), e);
            });
        });
    }, py::arg("x"), py::arg("col"), py::arg("geom"), py::arg("row0"), py::arg("row1"), py::kw_only(),
       index_bits_arg(), "im2col_kernel's per-element work (cuda/im2col.cuh) over its grid, on the CPU.");

    m.def("col2im_accumulate", [](const py::array& dcol_, const py::array& dx_, const py::tuple& geom, index_t row0,
                                  index_t row1, int bits) {
        const ConvGeom g = geom_with_rows(geom, row0, row1);
        const ArrayView dcol = host_view(dcol_, "dcol");
        return dispatch_float(float_dtype(dcol), [&](auto t) {
            using T = decltype(t);
            const T* cp = in_ptr<T>(dcol, {row1 - row0, g.patch_size()});
            T* dp = out_ptr<T>(host_view(dx_, "dx"), image_shape(g));
            const bool small = cuda::col2im_index32(g, row0, row1);
            if (row1 <= row0) return with_index_bits(bits, small, "col2im_accumulate", [](auto) {});
            const cuda::Col2imRange r = cuda::col2im_range(g, row0, row1);
            return with_index_bits(bits, small, "col2im_accumulate", [&](auto tag) {
                using I = decltype(tag);
                const Geom<I> gi(g);
                for (I e = 0; e < I(r.count); ++e) cuda::col2im_element(cp, dp, gi, I(row0), I(row1), I(r.n0), e);
            });
        });
    }, py::arg("dcol"), py::arg("dx"), py::arg("geom"), py::arg("row0"), py::arg("row1"), py::kw_only(),
       index_bits_arg(), "col2im_kernel's per-element work (cuda/im2col.cuh) over its grid, on the CPU.");

    m.def("conv2d_direct_forward", [](const py::array& x_, const py::array& w_, const py::object& b_,
                                      const py::array& y_, const py::tuple& geom, bool relu, int bits) {
        const ConvGeom g = geom_from(geom);
        const ArrayView x = host_view(x_, "x"), w = host_view(w_, "w");
        return dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            const T* wp = in_ptr<T>(w, {g.KH, g.KW, g.C, -1});
            const index_t O = w.shape[3];
            const T* bp = b_.is_none() ? nullptr : in_ptr<T>(host_view(b_, "b"), {O});
            T* yp = out_ptr<T>(host_view(y_, "y"), {g.N, g.OH, g.OW, O});
            const index_t count = cuda::direct_forward_count(g, O);
            return with_index_bits(bits, cuda::direct_forward_index32(g, O), "conv2d_direct_forward", [&](auto tag) {
                using I = decltype(tag);
                const Geom<I> gi(g);
                for (I e = 0; e < I(count); ++e) cuda::direct_forward_element(xp, wp, bp, yp, gi, I(O), relu, e);
            });
        });
    }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("geom"), py::arg("relu"), py::kw_only(),
       index_bits_arg(), "direct_forward_kernel's per-element work (cuda/conv_direct.cuh) over its grid, on the CPU.");

    m.def("conv2d_direct_backward_weights", [](const py::array& dy_, const py::array& x_, const py::array& dw_,
                                               const py::object& db_, const py::tuple& geom, int bits) {
        const ConvGeom g = geom_from(geom);
        const ArrayView x = host_view(x_, "x"), dw = host_view(dw_, "dw");
        return dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T* xp = in_ptr<T>(x, image_shape(g));
            T* dwp = out_ptr<T>(dw, {g.KH, g.KW, g.C, -1});
            const index_t O = dw.shape[3];
            const T* dyp = in_ptr<T>(host_view(dy_, "dy"), {g.N, g.OH, g.OW, O});
            T* dbp = db_.is_none() ? nullptr : out_ptr<T>(host_view(db_, "db"), {O});
            const index_t K = g.patch_size(), P = g.out_pixels();
            const bool small = cuda::direct_weights_index32(g, O);
            if (O == 0 || P == 0) {  // the launcher's memset
                std::fill(dwp, dwp + K * O, T(0));
                if (dbp) std::fill(dbp, dbp + O, T(0));
                return with_index_bits(bits, small, "conv2d_direct_backward_weights", [](auto) {});
            }
            const cuda::DirectChunks chunks(P);
            std::vector<double> part(static_cast<size_t>(chunks.count * (K + 1) * O));
            const int used = with_index_bits(bits, small, "conv2d_direct_backward_weights", [&](auto tag) {
                using I = decltype(tag);
                const Geom<I> gi(g);
                // grid (O tiles, K + has_db, chunks) x block (32, kDirectLanes): each thread's lane sum,
                // the lanes added in lane order in double (the kernel's shared-memory step)
                for (I chunk = 0; chunk < I(chunks.count); ++chunk)
                    for (I k = 0; k < I(K + (dbp ? 1 : 0)); ++k)
                        for (I o = 0; o < I(O); ++o) {
                            double s = 0.0;
                            for (I lane = 0; lane < cuda::kDirectLanes; ++lane)
                                s += static_cast<double>(
                                    cuda::direct_weights_lane_sum(xp, dyp, gi, I(O), I(chunks.pixels), k, chunk, o, lane));
                            part[static_cast<size_t>((index_t(chunk) * (K + 1) + k) * O + o)] = s;
                        }
            });
            for (index_t e = 0; e < (K + (dbp ? 1 : 0)) * O; ++e)
                cuda::direct_weights_finish_element(part.data(), dwp, dbp, K, O, chunks.count, e);
            return used;
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dw"), py::arg("db"), py::arg("geom"), py::kw_only(), index_bits_arg(),
       "direct_weights_partials_kernel's per-thread work and direct_weights_finish_kernel's per-element\n"
       "work (cuda/conv_direct.cuh) over their grids, the lanes and chunks added in the kernels' order.");
}

}  // namespace
}  // namespace cnnkit

PYBIND11_MODULE(_cuda_host, m) {
    m.doc() = "cnnkit test-only module: the CUDA kernels' per-element functions run on the CPU (tests/test_cuda_host.py)";
    cnnkit::bind(m);
}
