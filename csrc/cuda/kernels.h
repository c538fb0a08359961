// kernels.h: the host entry points of the CUDA kernels (csrc/cuda/*.cu), as the bindings
// (bind_cuda.cpp, a plain C++ file: no CUDA headers needed, through bind_<family>.h) call them:
// the list in kernels.inc, shared with the CPU twins (cpu/kernels.h), declared here in namespace
// cnnkit::cuda, plus the module's own functions (launch.cu). Every kernel runs on the Stream it is
// given (CuPy's current stream): the call queues the work and returns.
#pragma once

#include <cstdint>

#include "common.h"

namespace cnnkit {
namespace cuda {

// A cudaStream_t, carried as an opaque pointer so that this header needs no CUDA headers
// (check.cuh's as_stream turns it back).
struct Stream {
    void* handle;
};

// launch.cu
bool sync_checks();
void set_sync_checks(bool on);
void launch_fault_selftest(Stream stream);  // an invalid launch configuration (never runs)
void memory_fault_selftest(Stream stream);  // a kernel that reads address 8 (kills the context)
void scratch_fault_selftest(Stream stream);  // a scratch allocation of 2^62 bytes (MemoryError)
int runtime_version();
int device_count();  // 0 without a driver or device (never throws)
int driver_version();  // the CUDA version the driver supports (12080 = 12.8); 0 without a driver

// Where kernel scratch comes from. The binding module installs CuPy's allocator (cupy.cuda.alloc:
// CuPy's memory pool on the current stream, one pool for arrays and scratch, and CuPy's
// OutOfMemoryError after it has freed its cache) with set_scratch_allocator; without one, scratch
// comes from cudaMallocAsync. alloc returns the device pointer and sets *handle to what release
// takes back; it throws (AllocError for an allocation that failed) and never returns null for bytes > 0.
struct ScratchAllocator {
    void* (*alloc)(std::size_t bytes, void** handle, const char* what) = nullptr;
    void (*release)(void* handle) = nullptr;
};
void set_scratch_allocator(ScratchAllocator allocator);
ScratchAllocator scratch_allocator();

#include "kernels.inc"

}  // namespace cuda
}  // namespace cnnkit
