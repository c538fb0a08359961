# cuda.cmake: cnnkit._cuda, the CUDA twin of cnnkit._core: the kernels (csrc/cuda/*.cu) and their
# bindings (csrc/bind_cuda.cpp, plain C++: the same bind_<family>.h as the CPU's). Included by
# CMakeLists.txt once it has found nvcc and enabled the CUDA language (CNNKIT_CUDA=AUTO|ON).
#
# - Architectures: sm_75 (T4), sm_80 (A100, A10/L4 run it too) and sm_90 (H100/H200) machine code
#   plus compute_90 PTX, which the driver JIT-compiles for newer GPUs. Override with -DCMAKE_CUDA_ARCHITECTURES=... (for example
#   "native" when building on the GPU machine, or "90" for a faster build for one card).
# - The CUDA runtime is linked statically (CUDA::cudart_static): the module needs no libcudart at
#   run time and loads the driver only on the first CUDA call, so `import cnnkit` works on a machine
#   without a GPU or driver. Kernels take device pointers from CuPy and run on CuPy's stream.
# - No cuBLAS/cuDNN: the GEMMs run through CuPy's matmul.
find_package(CUDAToolkit REQUIRED)

set(CNNKIT_CUDA_ARCHS "${CMAKE_CUDA_ARCHITECTURES}")  # defaulted in CMakeLists.txt

file(GLOB CNNKIT_CUDA_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
pybind11_add_module(_cuda MODULE csrc/bind_cuda.cpp ${CNNKIT_CUDA_KERNELS})
target_include_directories(_cuda PRIVATE csrc)
set_target_properties(_cuda PROPERTIES
  CUDA_ARCHITECTURES "${CNNKIT_CUDA_ARCHS}"
  CUDA_RUNTIME_LIBRARY Static
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_SEPARABLE_COMPILATION OFF)
target_link_libraries(_cuda PRIVATE CUDA::cudart_static)
string(REPLACE ";" "," CNNKIT_CUDA_ARCHS_STR "${CNNKIT_CUDA_ARCHS}")
target_compile_definitions(_cuda PRIVATE
  CNNKIT_VERSION="${SKBUILD_PROJECT_VERSION}"
  CNNKIT_CUDA_ARCHITECTURES="${CNNKIT_CUDA_ARCHS_STR}")
target_compile_options(_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 -Xcompiler=-fvisibility=hidden>
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -O3>)
install(TARGETS _cuda DESTINATION cnnkit)
message(STATUS "cnnkit: CUDA architectures ${CNNKIT_CUDA_ARCHS}, runtime linked statically")
