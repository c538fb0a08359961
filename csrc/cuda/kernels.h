// kernels.h: the host entry points of the CUDA kernels (csrc/cuda/*.cu), as the bindings
// (csrc/bind_cuda.cpp, a plain C++ file: no CUDA headers needed) call them. Each takes device
// pointers already checked by the binding (dtype, shape, contiguity), the validated geometry, and
// the CUDA stream to run on (CuPy's current stream, as a void*). They queue work and return; errors
// are C++ exceptions (std::invalid_argument -> ValueError, std::runtime_error -> RuntimeError).
// Each is defined for T = float and double (explicit instantiations in the .cu files); index
// arrays I are int32 or int64.
#pragma once

#include <cstdint>

#include "common.h"

namespace cnnkit {
namespace cuda {

// launch.cu
bool sync_checks();
void set_sync_checks(bool on);
void launch_fault_selftest(void* stream);       // an invalid launch configuration (never runs)
void memory_fault_selftest(void* stream);       // a kernel that reads address 8 (kills the context)
int runtime_version();
int device_count();  // 0 without a driver or device (never throws)

// im2col.cu
template <class T>
void im2col(const T* x, T* col, const ConvGeom& g, index_t row0, index_t row1, void* stream);
template <class T>
void col2im_accumulate(const T* dcol, T* dx, const ConvGeom& g, index_t row0, index_t row1, void* stream);
template <class T>
void bias_add(T* y, const T* b, index_t rows, index_t O, bool relu, void* stream);
template <class T>
void bias_grad(const T* dy, T* db, index_t rows, index_t O, void* stream);

// conv_direct.cu
template <class T>
void conv2d_direct_forward(const T* x, const T* w, const T* b, T* y, const ConvGeom& g, index_t O, bool relu,
                           void* stream);
template <class T>
void conv2d_direct_backward_weights(const T* x, const T* dy, T* dw, T* db, const ConvGeom& g, index_t O,
                                    void* stream);

// pool.cu
template <class T, class I>
void max_pool2d_forward(const T* x, T* y, I* argmax, const ConvGeom& g, void* stream);
template <class T, class I>
void max_pool2d_backward(const T* dy, const I* argmax, T* dx, const ConvGeom& g, void* stream);
template <class T>
void avg_pool2d_forward(const T* x, T* y, const ConvGeom& g, void* stream);
template <class T>
void avg_pool2d_backward(const T* dy, T* dx, const ConvGeom& g, void* stream);
template <class T>
void global_avg_pool2d_forward(const T* x, T* y, index_t N, index_t HW, index_t C, void* stream);
template <class T>
void global_avg_pool2d_backward(const T* dy, T* dx, index_t N, index_t HW, index_t C, void* stream);
template <class T, class I>
void global_max_pool2d_forward(const T* x, T* y, I* argmax, index_t N, index_t HW, index_t C, void* stream);
template <class T, class I>
void global_max_pool2d_backward(const T* dy, const I* argmax, T* dx, index_t N, index_t HW, index_t C,
                                void* stream);
template <class T, class I>
void stochastic_pool2d_forward(const T* x, T* y, I* index, const ConvGeom& g, bool training,
                               std::uint64_t seed, void* stream);
template <class T>
void stochastic_pool2d_backward_inference(const T* dy, const T* x, T* dx, const ConvGeom& g, void* stream);

// activation.cu. Elementwise: n elements. Row-wise: (rows, cols), normalized over each row.
enum class Unary { relu, sigmoid, tanh };
enum class Binary { relu, sigmoid, sigmoid_from_output, tanh, tanh_from_output };
enum class Alpha { leaky_relu, elu };
enum class Rows { softmax, log_softmax };
enum class RowsBack { softmax, softmax_from_output, log_softmax, log_softmax_from_output };
template <class T>
void unary_forward(Unary op, const T* x, T* y, index_t n, void* stream);
template <class T>
void binary_backward(Binary op, const T* dy, const T* v, T* dx, index_t n, void* stream);
template <class T>
void alpha_forward(Alpha op, const T* x, T* y, index_t n, T alpha, void* stream);
template <class T>
void alpha_backward(Alpha op, const T* dy, const T* x, T* dx, index_t n, T alpha, void* stream);
template <class T>
void rows_forward(Rows op, const T* x, T* y, index_t rows, index_t cols, void* stream);
template <class T>
void rows_backward(RowsBack op, const T* dy, const T* v, T* dx, index_t rows, index_t cols, void* stream);
template <class T>
void dropout_forward(const T* x, T* y, index_t n, double rate, std::uint64_t seed, void* stream);

// norm.cu
template <class T>
void batch_norm_batch_stats(const T* x, index_t M, index_t C, double epsilon, double* mean, double* invstd,
                            void* stream);
template <class T>
void batch_norm_train_forward(const T* x, const T* gamma, const T* beta, index_t M, index_t C, double momentum,
                              double epsilon, T* y, double* mean, double* invstd, T* moving_mean, T* moving_var,
                              void* stream);
template <class T>
void batch_norm_inference_forward(const T* x, const T* gamma, const T* beta, const T* moving_mean,
                                  const T* moving_var, index_t M, index_t C, double epsilon, T* y, void* stream);
template <class T>
void batch_norm_train_backward(const T* dy, const T* x, const T* gamma, const double* mean, const double* invstd,
                               index_t M, index_t C, T* dx, T* dgamma, T* dbeta, void* stream);
template <class T>
void batch_norm_inference_backward(const T* dy, const T* x, const T* gamma, const T* moving_mean,
                                   const T* moving_var, index_t M, index_t C, double epsilon, T* dx, T* dgamma,
                                   T* dbeta, void* stream);

// loss.cu. labels (N,) int64 or probs (N, K): exactly one is non-null. An out-of-range label is
// refused (std::invalid_argument naming the first), at the cost of one stream synchronization.
template <class T>
void softmax_cross_entropy_forward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                   index_t K, double* row_loss, T* loss, void* stream);
template <class T>
void softmax_cross_entropy_backward(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                    index_t K, double dloss, T* dlogits, void* stream);
template <class T>
void softmax_cross_entropy_fused(const T* logits, const std::int64_t* labels, const T* probs, index_t N,
                                 index_t K, double* row_loss, T* loss, T* dlogits, void* stream);

}  // namespace cuda
}  // namespace cnnkit
