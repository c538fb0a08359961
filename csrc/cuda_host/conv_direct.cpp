// conv_direct.cpp (cnnkit._cuda_host, test-only): csrc/cuda/conv_direct.cu's launchers on the CPU:
// the kernels' per-thread functions (cuda/conv_direct.cuh) over their grids, and the one step done
// in shared memory (the 8 pixel lanes of a block added in lane order, in double) in the kernel's order.
#include <algorithm>
#include <vector>

#include "cuda/conv_direct.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {

template <class T>
void conv2d_direct_forward(const T* x, const T* w, const T* b, T* y, const ConvGeom& g, index_t O, bool relu,
                           Stream stream) {
    const index_t count = cuda::direct_forward_count(g, O);
    with_index_type(stream, cuda::direct_forward_index32(g, O), "conv2d_direct_forward", [&](auto tag) {
        using I = decltype(tag);
        const cuda::Geom<I> gi(g);
        for (I e = 0; e < I(count); ++e) cuda::direct_forward_element(x, w, b, y, gi, I(O), relu, e);
    });
}

template <class T>
void conv2d_direct_backward_weights(const T* x, const T* dy, T* dw, T* db, const ConvGeom& g, index_t O,
                                    Stream stream) {
    const index_t K = g.patch_size(), P = g.out_pixels();
    with_index_type(stream, cuda::direct_weights_index32(g, O), "conv2d_direct_backward_weights", [&](auto tag) {
        using I = decltype(tag);
        if (O == 0) return;
        if (P == 0) {  // the launcher's memsets
            std::fill(dw, dw + K * O, T(0));
            if (db) std::fill(db, db + O, T(0));
            return;
        }
        const cuda::DirectChunks chunks(P);
        std::vector<double> part(static_cast<size_t>(chunks.count * (K + 1) * O));
        const cuda::Geom<I> gi(g);
        // grid (O tiles of 32, K taps + the bias, chunks) x block (32, kDirectLanes)
        for (I chunk = 0; chunk < I(chunks.count); ++chunk)
            for (I k = 0; k < I(K + (db ? 1 : 0)); ++k)
                for (I o = 0; o < I(O); ++o) {
                    double s = 0.0;
                    for (I lane = 0; lane < cuda::kDirectLanes; ++lane)
                        s += static_cast<double>(
                            cuda::direct_weights_lane_sum(x, dy, gi, I(O), I(chunks.pixels), k, chunk, o, lane));
                    part[static_cast<size_t>((index_t(chunk) * (K + 1) + k) * O + o)] = s;
                }
        for (index_t e = 0; e < (K + (db ? 1 : 0)) * O; ++e)
            cuda::direct_weights_finish_element(part.data(), dw, db, K, O, chunks.count, e);
    });
}

CNNKIT_INSTANTIATE_CONV_DIRECT(float)
CNNKIT_INSTANTIATE_CONV_DIRECT(double)

}  // namespace cuda_host
}  // namespace cnnkit
