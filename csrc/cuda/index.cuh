// index.cuh: the index type of a CUDA launch, and the geometry in that type. Plain C++ (no CUDA
// headers), so that the host test module cnnkit._cuda_host (bind_cuda_host.cpp) makes the same
// choice as the launchers and runs the same per-element functions (csrc/cuda/*.cuh) on the CPU.
//
// Kernels index in 32 bits when every index they form is below kMax32: 64-bit integer division is
// emulated on the GPU (dozens of instructions) and would dominate the memory-bound kernels that
// decode (n, h, w, c) from a flat index. "Every index" means the flat sizes the kernel addresses AND
// the window arithmetic: oh * SH - PT + i * DH and its kin stay within [-(padding or dilated
// window), padded extent], so with each geometry entry, each padded extent, (K - 1) * D + 1 and
// (O - 1) * S below kMax32, no intermediate overflows int32 (and narrowing loses nothing).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "common.h"

namespace cnnkit {
namespace cuda {

// The margin keeps i + grid stride (< 2^24) from overflowing a grid-stride loop's int32 counter.
constexpr index_t kMax32 = (index_t(1) << 31) - (index_t(1) << 25);

// Every size in [0, kMax32).
inline bool fits32(std::initializer_list<index_t> sizes) {
    for (index_t s : sizes)
        if (s < 0 || s >= kMax32) return false;
    return true;
}

// The geometry (validated by make_geom, so none of these sums and products overflows 64 bits) and
// the kernel's own flat sizes all fit 32-bit indexing.
inline bool fits32(const ConvGeom& g, std::initializer_list<index_t> sizes) {
    if (!fits32({g.N, g.H, g.W, g.C, g.KH, g.KW, g.SH, g.SW, g.DH, g.DW, g.PT, g.PB, g.PL, g.PR, g.OH, g.OW}))
        return false;
    return fits32({g.H + g.PT + g.PB, g.W + g.PL + g.PR, (g.KH - 1) * g.DH + 1, (g.KW - 1) * g.DW + 1,
                   (g.OH - 1) * g.SH, (g.OW - 1) * g.SW, g.in_size(), g.out_pixels(), g.patch_size()}) &&
           fits32(sizes);
}

// Calls f(std::int32_t{}) or f(index_t{}): the index type for a launch.
template <class F>
void with_index_type(bool small, F&& f) {
    if (small)
        f(std::int32_t{});
    else
        f(index_t{});
}

// Column reductions (bias_grad, batch norm) cut the M rows into chunks of kChunkRows (more where
// there would be over 65535 chunks, the limit of gridDim.y), set by the shape only; kChunkLanes row
// lanes per block (check.cuh's Chunks adds the grid).
constexpr index_t kChunkRows = 1024;
constexpr int kChunkLanes = 8;
struct ChunkRows {
    index_t rows, count;
    explicit ChunkRows(index_t M) {
        rows = kChunkRows;
        if ((M + rows - 1) / rows > 65535) rows = (M + 65534) / 65535;
        count = (M + rows - 1) / rows;
    }
};

// ConvGeom in the index type I; Geom<std::int32_t> only where fits32(g, ...) said so.
template <class I>
struct Geom {
    I N, H, W, C, KH, KW, SH, SW, DH, DW, PT, PB, PL, PR, OH, OW;
    explicit Geom(const ConvGeom& g)
        : N(I(g.N)), H(I(g.H)), W(I(g.W)), C(I(g.C)), KH(I(g.KH)), KW(I(g.KW)), SH(I(g.SH)), SW(I(g.SW)),
          DH(I(g.DH)), DW(I(g.DW)), PT(I(g.PT)), PB(I(g.PB)), PL(I(g.PL)), PR(I(g.PR)), OH(I(g.OH)), OW(I(g.OW)) {}
};

}  // namespace cuda
}  // namespace cnnkit
