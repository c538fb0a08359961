// bind_loss.h: the bindings of softmax cross-entropy (cpu/loss.cpp, cuda/loss.cu), written once for
// both devices (see bind_array.h). logits (N, K); labels int64 (N,) class ids or (N, K) target
// probabilities in the logits' dtype; row_loss (N,) float64 scratch; loss a 0-d array.
#pragma once

#include "bind_array.h"

namespace cnnkit {

// What the three entry points read: the logits and the target (class ids or probabilities: exactly
// one of labels and probs is set).
template <class T>
struct XentInputs {
    index_t N, K;
    const T* logits;
    const std::int64_t* labels = nullptr;
    const T* probs = nullptr;
    XentInputs(const ArrayView& logits_, const ArrayView& labels_) {
        logits = matrix_in<T>(logits_, "class", N, K);
        if (labels_.typestr == typestr_of<std::int64_t>())
            labels = in_ptr<std::int64_t>(labels_, {N});
        else
            probs = in_ptr<T>(labels_, {N, K});
    }
};

// f(T{}, XentInputs<T>) for the logits' float dtype T.
template <class D, class F>
void with_xent_inputs(const py::object& logits_, const py::object& labels_, F&& f) {
    const ArrayView logits = D::view(logits_, "logits"), labels = D::view(labels_, "labels");
    dispatch_float(float_dtype(logits), [&](auto t) { f(t, XentInputs<decltype(t)>(logits, labels)); });
}

template <class T>
T* loss_out(const ArrayView& loss) {
    require(loss.ndim() == 0, "loss must be a 0-d array");
    return out_ptr<T>(loss, {});
}

// check_labels=False: the caller validated the labels (cnnkit's training loop, once per fit); the GPU
// then skips its label check and the stream synchronization it costs. The CPU checks regardless.
#define CHECK_LABELS_ARG py::arg("check_labels") = true

template <class D>
void bind_loss(py::module_& m) {
    using A = typename D::Array;
    m.def("softmax_cross_entropy_forward", [](const A& logits, const A& labels, const A& row_loss_, const A& loss_,
                                              std::uintptr_t stream, bool check_labels) {
        with_xent_inputs<D>(logits, labels, [&](auto t, const auto& in) {
            using T = decltype(t);
            double* row_loss = out_ptr<double>(D::view(row_loss_, "row_loss"), {in.N});
            T* loss = loss_out<T>(D::view(loss_, "loss"));
            py::gil_scoped_release nogil;
            softmax_cross_entropy_forward(in.logits, in.labels, in.probs, in.N, in.K, row_loss, loss, check_labels,
                                          D::stream(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"), py::kw_only(), D::stream_arg(),
       CHECK_LABELS_ARG);

    m.def("softmax_cross_entropy_backward", [](const A& logits, const A& labels, double dloss, const A& dlogits_,
                                               std::uintptr_t stream, bool check_labels) {
        with_xent_inputs<D>(logits, labels, [&](auto t, const auto& in) {
            using T = decltype(t);
            T* dlogits = out_ptr<T>(D::view(dlogits_, "dlogits"), {in.N, in.K});
            py::gil_scoped_release nogil;
            softmax_cross_entropy_backward(in.logits, in.labels, in.probs, in.N, in.K, dloss, dlogits, check_labels,
                                           D::stream(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("dloss"), py::arg("dlogits"), py::kw_only(), D::stream_arg(),
       CHECK_LABELS_ARG);

    m.def("softmax_cross_entropy_fused", [](const A& logits, const A& labels, const A& row_loss_, const A& loss_,
                                            const A& dlogits_, std::uintptr_t stream, bool check_labels) {
        with_xent_inputs<D>(logits, labels, [&](auto t, const auto& in) {
            using T = decltype(t);
            double* row_loss = out_ptr<double>(D::view(row_loss_, "row_loss"), {in.N});
            T* loss = loss_out<T>(D::view(loss_, "loss"));
            T* dlogits = out_ptr<T>(D::view(dlogits_, "dlogits"), {in.N, in.K});
            py::gil_scoped_release nogil;
            softmax_cross_entropy_fused(in.logits, in.labels, in.probs, in.N, in.K, row_loss, loss, dlogits,
                                        check_labels, D::stream(stream));
        });
    }, py::arg("logits"), py::arg("labels"), py::arg("row_loss"), py::arg("loss"), py::arg("dlogits"),
       py::kw_only(), D::stream_arg(), CHECK_LABELS_ARG);
}

#undef CHECK_LABELS_ARG

}  // namespace cnnkit
