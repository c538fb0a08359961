// kernels.h: the entry points of cnnkit._cuda_host (test-only; see bind_cuda_host.cpp), the CUDA
// launchers' twins that run on the CPU: each csrc/cuda_host/<family>.cpp mirrors csrc/cuda/<family>.cu,
// calling the same per-element __host__ __device__ functions (csrc/cuda/<family>.cuh) in a loop over
// the grid the launcher would start, in the index type it would pick. The list is kernels.inc, as
// for cnnkit._core and cnnkit._cuda, so the bindings (bind_<family>.h) are the same code; a family
// not implemented here is not bound. Stream carries index_bits instead of a CUDA stream: 0 picks
// the index type as the launcher does, 64 forces 64-bit indices, 32 forces 32-bit ones and is
// refused where the launcher would index in 64 bits.
#pragma once

#include <cstdint>
#include <string>

#include "common.h"
#include "cuda/index.cuh"

namespace cnnkit {
namespace cuda_host {

struct Stream {
    std::uintptr_t index_bits;  // 0, 32 or 64
};

// The index bits the last entry point called on this thread used (32 or 64; 0 before any call).
int last_index_bits();
void set_last_index_bits(int bits);

// Calls f(std::int32_t{}) or f(index_t{}) as `stream` asks, launcher32 being the launcher's choice
// (the fits32 of csrc/cuda), and records the choice for last_index_bits.
template <class F>
void with_index_type(Stream stream, bool launcher32, const char* what, F&& f) {
    const std::uintptr_t bits = stream.index_bits;
    require(bits == 0 || bits == 32 || bits == 64, "index_bits must be 0, 32 or 64, got " + std::to_string(bits));
    require(bits != 32 || launcher32,
            std::string(what) + ": index_bits=32 refused: the launcher indexes this call in 64 bits");
    const bool use32 = bits == 0 ? launcher32 : bits == 32;
    set_last_index_bits(use32 ? 32 : 64);
    cuda::with_index_type(use32, f);
}

#include "kernels.inc"

}  // namespace cuda_host
}  // namespace cnnkit
