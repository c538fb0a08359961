// simd.h: CNNKIT_SIMD_CLONES marks a hot CPU loop to be compiled for AVX-512 (x86-64-v4), AVX2+FMA
// (x86-64-v3) and the baseline, with the copy picked at load time (GCC function multiversioning,
// which needs glibc's ifunc). The distributable build targets baseline x86-64 (SSE2) and still runs
// wide where the CPU can; a -march=native build (CNNKIT_NATIVE) or another compiler gets plain loops.
// Results are deterministic on a given machine (the lane count fixes any summation order).
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__GLIBC__) && !defined(CNNKIT_NATIVE_BUILD)
#define CNNKIT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// The loader's choice, for `python -m cnnkit info` (cpu_dispatch in bind_cpu.cpp): the ifunc resolver
// takes the first clone whose level __builtin_cpu_supports("x86-64-v4"/"x86-64-v3") confirms.
#define CNNKIT_SIMD_DISPATCH 1
#else
#define CNNKIT_SIMD_CLONES
#endif

// A helper that CNNKIT_SIMD_CLONES code calls must be inlined into it to be compiled for its target
// (and, called from activation.cpp's no-trapping-math region, to be compiled with that option).
#if defined(__GNUC__)
#define CNNKIT_INLINE inline __attribute__((always_inline))
#else
#define CNNKIT_INLINE inline
#endif
