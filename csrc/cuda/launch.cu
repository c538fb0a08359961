// launch.cu: the launch check every kernel launch goes through (check.cuh), the sync-check switch,
// build/runtime facts for cnnkit._cuda.build_info, and three self-tests of the error path that the
// GPU tests use: an invalid launch configuration (reported at launch, the context survives), a
// scratch allocation that fails (MemoryError; the next launch is unaffected) and a kernel that reads
// an invalid address (a sticky fault: only ever run in a throwaway process).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace cnnkit {
namespace cuda {

namespace {
bool env_sync() {
    const char* v = std::getenv("CNNKIT_CUDA_SYNC");
    return v && std::strcmp(v, "0") != 0 && v[0] != '\0';
}
std::atomic<bool> g_sync{env_sync()};
}  // namespace

bool sync_checks() { return g_sync.load(std::memory_order_relaxed); }
void set_sync_checks(bool on) { g_sync.store(on, std::memory_order_relaxed); }

void check_cuda(cudaError_t err, const char* what) {
    if (err == cudaSuccess) return;
    // A failed runtime call (a scratch allocation, a memset) also records its error as the runtime's
    // last error: clear it, or the next healthy kernel's launch check would report it as its own. (A
    // sticky error, a fault that killed the context, stays whatever is done here.)
    cudaGetLastError();
    const std::string message = std::string("cnnkit CUDA error in ") + what + ": " + cudaGetErrorName(err) + " (" +
                                cudaGetErrorString(err) + ")";
    if (err == cudaErrorMemoryAllocation) throw AllocError(message);  // MemoryError in Python
    throw std::runtime_error(message);
}

void check_launch(const char* kernel, cudaStream_t stream) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("cnnkit CUDA kernel ") + kernel + " failed to launch: " +
                                 cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                                 "); a sticky error may come from an earlier asynchronous kernel, "
                                 "set CNNKIT_CUDA_SYNC=1 to find it");
    if (sync_checks()) {
        err = cudaStreamSynchronize(stream);
        if (err != cudaSuccess)
            throw std::runtime_error(std::string("cnnkit CUDA kernel ") + kernel + " faulted: " +
                                     cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
    }
}

namespace {
__global__ void selftest_kernel(const float* p, float* out) {
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = p[0];
}
}  // namespace

void launch_fault_selftest(Stream stream) {
    // 4096 threads per block exceeds every GPU's limit (1024): cudaErrorInvalidConfiguration.
    CNNKIT_LAUNCH("selftest_invalid_launch", selftest_kernel, 1, 4096, 0, as_stream(stream), nullptr, nullptr);
}

void memory_fault_selftest(Stream stream) {
    const float* bad = reinterpret_cast<const float*>(std::uintptr_t(8));
    float* out = reinterpret_cast<float*>(std::uintptr_t(16));
    CNNKIT_LAUNCH("selftest_memory_fault", selftest_kernel, 1, 32, 0, as_stream(stream), bad, out);
}

void scratch_fault_selftest(Stream stream) {
    Scratch too_big(std::size_t(1) << 62, as_stream(stream), "selftest_scratch");  // 4 EiB: refused
}

namespace {
ScratchAllocator g_scratch_allocator;  // set once by the binding module, at import
}  // namespace

void set_scratch_allocator(ScratchAllocator allocator) { g_scratch_allocator = allocator; }
ScratchAllocator scratch_allocator() { return g_scratch_allocator; }

int runtime_version() {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
}

int driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return v;  // 0 when no driver is installed
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the (non-sticky) "no driver / no device" error
        return 0;
    }
    return n;
}

}  // namespace cuda
}  // namespace cnnkit
