// check.cuh: what every cnnkit CUDA kernel file shares: the launch check, launch shapes for
// grid-stride loops and chunked column reductions, a deterministic block reduction and
// stream-ordered scratch memory.
//
// Every launch goes through CNNKIT_LAUNCH(name, kernel, grid, block, stream, args...), which checks
// cudaGetLastError() right after the launch and throws std::runtime_error naming the kernel (the
// bindings turn it into a Python RuntimeError). A fault inside a kernel (an illegal address) is
// asynchronous: by default it surfaces at the next synchronizing call, and the next cnnkit launch
// reports it as "after <kernel>" (the sticky error may come from an earlier kernel). With sync
// checks on (CNNKIT_CUDA_SYNC=1 in the environment, or cnnkit._cuda.set_sync_checks(True)) every
// launch is followed by cudaStreamSynchronize, so the message names the kernel that faulted.
//
// Kernels never run on the legacy default stream by accident: the stream is always the one the
// caller passes (CuPy's current stream, from Python).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "common.h"
#include "cuda/index.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

// Whether each launch is followed by a synchronization (defined in launch.cu).
bool sync_checks();
void set_sync_checks(bool on);

// Throws std::runtime_error naming `what` if err != cudaSuccess (AllocError, MemoryError in Python,
// for cudaErrorMemoryAllocation), after clearing the runtime's last error.
void check_cuda(cudaError_t err, const char* what);

// After a launch: the launch error, and with sync checks the kernel's own fault.
void check_launch(const char* kernel, cudaStream_t stream);

#define CNNKIT_LAUNCH(name, kernel, grid, block, shmem, stream, ...)            \
    do {                                                                       \
        kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__);            \
        ::cnnkit::cuda::check_launch(name, (stream));                           \
    } while (0)

constexpr int kThreads = 256;
// Grid-stride loops never need more blocks than this (about 64 resident blocks x 132 SMs x a few):
// beyond it each thread loops. Well under the 2^31 - 1 limit of gridDim.x.
constexpr index_t kMaxBlocks = 1 << 16;

// Blocks of kThreads for a grid-stride loop over n items (at least 1, at most kMaxBlocks).
inline unsigned grid_for(index_t n, int threads = kThreads) {
    index_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > kMaxBlocks) b = kMaxBlocks;
    return static_cast<unsigned>(b);
}

// for (I i = first; i < n; i += stride) over all threads of a 1-D grid, with I = index_t (64-bit)
// or int32_t (see fits32 in index.cuh). CNNKIT_GRID_LOOP is the 64-bit one.
#define CNNKIT_GRID_LOOP_AS(I, i, n)                                                                   \
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); \
         i < (n); i += static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x))
#define CNNKIT_GRID_LOOP(i, n) CNNKIT_GRID_LOOP_AS(::cnnkit::index_t, i, n)

// Column reductions over a (rows, C) matrix (bias_grad, batch norm) cut the rows into chunks
// (ChunkRows, index.cuh), set by the shape only, so the result never depends on the launch; a block
// of (32 columns, kChunkLanes row lanes) reduces 32 columns of one chunk: grid (ceil(C / 32), chunks).
struct Chunks : ChunkRows {
    dim3 grid;
    Chunks(index_t M, index_t C)
        : ChunkRows(M), grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>(count)) {}
};

// The part of a chunked column reduction that thread (threadIdx.x, threadIdx.y) of block (blockIdx.x,
// blockIdx.y) covers: column c (ok: c < C; every thread still takes part in the lane sums) and the
// rows r0 + threadIdx.y, r0 + threadIdx.y + kChunkLanes, ... below r1 of chunk blockIdx.y.
struct ChunkThread {
    index_t c, chunk, r0, r1;
    bool ok;
    __device__ ChunkThread(index_t M, index_t C, index_t chunk_rows)
        : c(static_cast<index_t>(blockIdx.x) * 32 + threadIdx.x), chunk(blockIdx.y), r0(chunk * chunk_rows),
          r1(r0 + chunk_rows < M ? r0 + chunk_rows : M), ok(c < C) {}
    // The chunk's two per-column results: part[(chunk * 2) * C + c] = a, part[(chunk * 2 + 1) * C + c] = b.
    __device__ void store_pair(double* part, index_t C, double a, double b) const {
        if (ok && threadIdx.y == 0) {
            part[(chunk * 2) * C + c] = a;
            part[(chunk * 2 + 1) * C + c] = b;
        }
    }
};

// The sum of v over the block, returned to every thread. Deterministic: a fixed shuffle tree per
// warp, then warp 0 adds the warp sums in warp order. blockDim.x must be a multiple of 32 (<= 1024)
// and every thread of the block must call it (it synchronizes). shm: 32 values of scratch.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* shm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    __syncthreads();  // shm may still be read by a previous call
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    if (warp == 0) {
        A w = lane < nwarps ? shm[lane] : A(0);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) w += __shfl_down_sync(0xffffffffu, w, off);
        __syncwarp();  // every lane has read its shm slot before lane 0 overwrites shm[0]
        if (lane == 0) shm[0] = w;
    }
    __syncthreads();
    return shm[0];
}

// The maximum of v over the block with NaN winning (as max pooling's rule: a NaN anywhere gives
// NaN), returned to every thread. Same calling rules as block_sum.
template <class A>
__device__ __forceinline__ A nan_max(A a, A b) {
    return (a != a || b != b) ? (a != a ? a : b) : (b > a ? b : a);
}
template <class A>
__device__ __forceinline__ A block_max(A v, A* shm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = nan_max(v, __shfl_down_sync(0xffffffffu, v, off));
    __syncthreads();
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    if (warp == 0) {
        A w = lane < nwarps ? shm[lane] : shm[0];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) w = nan_max(w, __shfl_down_sync(0xffffffffu, w, off));
        __syncwarp();
        if (lane == 0) shm[0] = w;
    }
    __syncthreads();
    return shm[0];
}

// Stream-ordered scratch memory (cudaMallocAsync / cudaFreeAsync on the caller's stream): freed
// when the launcher returns or throws, after the kernels queued before it on that stream.
class Scratch {
  public:
    // From the installed allocator (CuPy's pool, on the stream the kernels run on: the block goes
    // back to that stream's pool, stream-ordered) or else cudaMallocAsync on `stream`.
    Scratch(std::size_t bytes, cudaStream_t stream, const char* what) : stream_(stream) {
        if (!bytes) return;
        const ScratchAllocator a = scratch_allocator();
        if (a.alloc) {
            release_ = a.release;
            ptr_ = a.alloc(bytes, &handle_, what);
        } else {
            check_cuda(cudaMallocAsync(&ptr_, bytes, stream), what);
        }
    }
    ~Scratch() {
        if (handle_) {
            release_(handle_);
        } else if (ptr_) {
            cudaFreeAsync(ptr_, stream_);
        }
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }

  private:
    void* ptr_ = nullptr;
    void* handle_ = nullptr;  // the allocator's handle (CuPy's MemoryPointer), when it made the block
    void (*release_)(void*) = nullptr;
    cudaStream_t stream_;
};

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s.handle); }

}  // namespace cuda
}  // namespace cnnkit
