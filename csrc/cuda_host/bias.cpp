// bias.cpp (cnnkit._cuda_host, test-only): csrc/cuda/bias.cu's launchers on the CPU: the kernels'
// per-element functions (cuda/bias.cuh) over their grids, and bias_grad's shared-memory step (the
// row lanes of a block added in lane order) in the kernel's order.
#include <algorithm>
#include <vector>

#include "cuda/bias.cuh"
#include "cuda_host/kernels.h"

namespace cnnkit {
namespace cuda_host {

template <class T>
void bias_add(T* y, const T* b, index_t rows, index_t O, bool relu, Stream stream) {
    const index_t count = checked_mul(rows, O, "bias_add size");
    with_index_type(stream, cuda::bias_add_index32(rows, O), "bias_add", [&](auto tag) {
        using I = decltype(tag);
        for (I e = 0; e < I(count); ++e) cuda::bias_add_element(y, b, I(O), relu, e);
    });
}

template <class T>
void bias_grad(const T* dy, T* db, index_t rows, index_t O, Stream stream) {
    with_index_type(stream, false, "bias_grad", [&](auto) {
        if (O == 0) return;
        if (rows == 0) {  // the launcher's memset
            std::fill(db, db + O, T(0));
            return;
        }
        const cuda::ChunkRows ch(rows);
        std::vector<double> part(static_cast<size_t>(ch.count * O));
        for (index_t chunk = 0; chunk < ch.count; ++chunk)
            for (index_t o = 0; o < O; ++o) {
                double t = 0.0;
                for (int l = 0; l < cuda::kChunkLanes; ++l)
                    t += cuda::column_lane_sum(dy, rows, O, ch.rows, chunk, o, l, cuda::kChunkLanes);
                part[static_cast<size_t>(chunk * O + o)] = t;
            }
        for (index_t o = 0; o < O; ++o) cuda::column_finish_element(part.data(), db, ch.count, O, o);
    });
}

CNNKIT_INSTANTIATE_BIAS(float)
CNNKIT_INSTANTIATE_BIAS(double)

}  // namespace cuda_host
}  // namespace cnnkit
