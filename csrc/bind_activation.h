// bind_activation.h: the bindings of the activations, softmax/log_softmax and dropout
// (cpu/activation.cpp, cuda/activation.cu), written once for both devices (see bind_array.h). Each
// Python function binds one op of an entry point (Unary, Binary, Alpha, Rows, RowsBack: common.h).
#pragma once

#include "bind_array.h"

namespace cnnkit {

// y = f(x) elementwise (y may be x).
template <class D>
void def_unary(py::module_& m, const char* name, Unary op, const char* doc) {
    using A = typename D::Array;
    m.def(name, [op](const A& x_, const A& y_, std::uintptr_t stream) {
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_map<T>(x, y);
            py::gil_scoped_release nogil;
            unary_forward(op, static_cast<const T*>(x.data), static_cast<T*>(y.data), n, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::kw_only(), D::stream_arg(), doc);
}

// dx = f'(v) dy elementwise, v being the forward's input or output (named v_name).
template <class D>
void def_binary(py::module_& m, const char* name, const char* v_name, Binary op, const char* doc) {
    using A = typename D::Array;
    m.def(name, [op, v_name](const A& dy_, const A& v_, const A& dx_, std::uintptr_t stream) {
        const ArrayView dy = D::view(dy_, "dy"), v = D::view(v_, v_name), dx = D::view(dx_, "dx");
        dispatch_float(float_dtype(v), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_grad_map<T>(dy, v, dx);
            py::gil_scoped_release nogil;
            binary_backward(op, static_cast<const T*>(dy.data), static_cast<const T*>(v.data),
                            static_cast<T*>(dx.data), n, D::stream(stream));
        });
    }, py::arg("dy"), py::arg(v_name), py::arg("dx"), py::kw_only(), D::stream_arg(), doc);
}

// The forward and backward of an elementwise op with a finite scalar alpha (>= 0 when nonnegative).
template <class D>
void def_alpha(py::module_& m, const char* fwd_name, const char* bwd_name, Alpha op, bool nonnegative) {
    using A = typename D::Array;
    m.def(fwd_name, [=](const A& x_, const A& y_, double alpha, std::uintptr_t stream) {
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T a = finite_param<T>(alpha, "alpha", nonnegative);
            const index_t n = check_map<T>(x, y);
            py::gil_scoped_release nogil;
            alpha_forward(op, static_cast<const T*>(x.data), static_cast<T*>(y.data), n, a, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("alpha"), py::kw_only(), D::stream_arg());
    m.def(bwd_name, [=](const A& dy_, const A& x_, const A& dx_, double alpha, std::uintptr_t stream) {
        const ArrayView dy = D::view(dy_, "dy"), x = D::view(x_, "x"), dx = D::view(dx_, "dx");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const T a = finite_param<T>(alpha, "alpha", nonnegative);
            const index_t n = check_grad_map<T>(dy, x, dx);
            py::gil_scoped_release nogil;
            alpha_backward(op, static_cast<const T*>(dy.data), static_cast<const T*>(x.data),
                           static_cast<T*>(dx.data), n, a, D::stream(stream));
        });
    }, py::arg("dy"), py::arg("x"), py::arg("dx"), py::arg("alpha"), py::kw_only(), D::stream_arg());
}

// A row-wise op over the last axis (y may be x).
template <class D>
void def_rows(py::module_& m, const char* name, Rows op) {
    using A = typename D::Array;
    m.def(name, [op](const A& x_, const A& y_, std::uintptr_t stream) {
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            check_map<T>(x, y);
            const auto [rows, cols] = rows_cols(x);
            py::gil_scoped_release nogil;
            rows_forward(op, static_cast<const T*>(x.data), static_cast<T*>(y.data), rows, cols, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::kw_only(), D::stream_arg(), "normalizes each row (the last axis); y may be x");
}

// Its gradient, from the forward's input or output (named v_name).
template <class D>
void def_rows_back(py::module_& m, const char* name, const char* v_name, RowsBack op) {
    using A = typename D::Array;
    m.def(name, [op, v_name](const A& dy_, const A& v_, const A& dx_, std::uintptr_t stream) {
        const ArrayView dy = D::view(dy_, "dy"), v = D::view(v_, v_name), dx = D::view(dx_, "dx");
        dispatch_float(float_dtype(v), [&](auto t) {
            using T = decltype(t);
            check_grad_map<T>(dy, v, dx);
            const auto [rows, cols] = rows_cols(v);
            py::gil_scoped_release nogil;
            rows_backward(op, static_cast<const T*>(dy.data), static_cast<const T*>(v.data), static_cast<T*>(dx.data),
                          rows, cols, D::stream(stream));
        });
    }, py::arg("dy"), py::arg(v_name), py::arg("dx"), py::kw_only(), D::stream_arg(),
       "gradient over each row (the last axis)");
}

// The elementwise activations and dropout (bind_activation adds the row-wise softmax family).
template <class D>
void bind_elementwise_activation(py::module_& m) {
    def_unary<D>(m, "relu_forward", Unary::relu, "y = relu(x) (y may be x)");
    def_binary<D>(m, "relu_backward", "v", Binary::relu, "dx = dy where v > 0 else 0; v = x or relu(x)");
    def_unary<D>(m, "sigmoid_forward", Unary::sigmoid, "y = sigmoid(x) (y may be x)");
    def_binary<D>(m, "sigmoid_backward", "x", Binary::sigmoid, "dx = dy sigmoid'(x)");
    def_binary<D>(m, "sigmoid_backward_from_output", "y", Binary::sigmoid_from_output,
                  "dx = dy y (1 - y), y = sigmoid(x)");
    def_unary<D>(m, "tanh_forward", Unary::tanh, "y = tanh(x) (y may be x)");
    def_binary<D>(m, "tanh_backward", "x", Binary::tanh, "dx = dy (1 - tanh(x)^2)");
    def_binary<D>(m, "tanh_backward_from_output", "y", Binary::tanh_from_output, "dx = dy (1 - y^2), y = tanh(x)");
    def_alpha<D>(m, "leaky_relu_forward", "leaky_relu_backward", Alpha::leaky_relu, true);
    def_alpha<D>(m, "elu_forward", "elu_backward", Alpha::elu, false);

    // Dropout: forward y = mask * x / (1 - rate); the backward is the same map applied to dy.
    using A = typename D::Array;
    m.def("dropout_forward", [](const A& x_, const A& y_, double rate, std::uint64_t seed, std::uintptr_t stream) {
        check_rate(rate);
        const ArrayView x = D::view(x_, "x"), y = D::view(y_, "y");
        dispatch_float(float_dtype(x), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_map<T>(x, y);
            py::gil_scoped_release nogil;
            dropout_forward(static_cast<const T*>(x.data), static_cast<T*>(y.data), n, rate, seed, D::stream(stream));
        });
    }, py::arg("x"), py::arg("y"), py::arg("rate"), py::arg("seed"), py::kw_only(), D::stream_arg(),
       "y[i] = x[i] / (1 - rate) if uniform01(seed, i) >= rate else 0 (also the backward, on dy)");
}

template <class D>
void bind_activation(py::module_& m) {
    bind_elementwise_activation<D>(m);
    def_rows<D>(m, "softmax_forward", Rows::softmax);
    def_rows<D>(m, "log_softmax_forward", Rows::log_softmax);
    def_rows_back<D>(m, "softmax_backward", "x", RowsBack::softmax);
    def_rows_back<D>(m, "softmax_backward_from_output", "y", RowsBack::softmax_from_output);
    def_rows_back<D>(m, "log_softmax_backward", "x", RowsBack::log_softmax);
    def_rows_back<D>(m, "log_softmax_backward_from_output", "y", RowsBack::log_softmax_from_output);
}

}  // namespace cnnkit
