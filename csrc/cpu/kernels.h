// kernels.h: the entry points of the CPU kernels (csrc/cpu/*.cpp), as the bindings (bind_cpu.cpp,
// through bind_<family>.h) call them: the list in kernels.inc, shared with the CUDA twins
// (cuda/kernels.h), declared here in namespace cnnkit::cpu. The CPU has no stream: the kernels run
// on the calling thread's OpenMP team and return when done; Stream is there so that a binding calls
// both devices' kernels with the same arguments, and so that the call, unqualified, finds the
// device's kernel by argument-dependent lookup.
#pragma once

#include <cstdint>

#include "common.h"

namespace cnnkit {
namespace cpu {

struct Stream {};

#include "kernels.inc"

}  // namespace cpu
}  // namespace cnnkit
