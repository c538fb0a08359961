// bind_optimizer.h: the bindings of the optimizers' fused update steps (cpu/optimizer.cpp,
// cuda/optimizer.cu), written once for both devices (see bind_array.h) and for cnnkit._cuda_host.
// Each updates `variable` and its slots in place from `gradient`, all C-contiguous arrays of one
// float dtype and one shape that share no memory; a slot given as None selects the plain form
// (kernels.inc). The scalars are the step's, worked out by cnnkit.ops.optimizer: the learning rate
// (Adam: alpha, with the bias correction), 1 - beta, and keep = 1 - weight_decay * learning_rate.
#pragma once

#include <string>
#include <vector>

#include "bind_array.h"

namespace cnnkit {

namespace optimizer_detail {

// The updated arrays: variable (writable), gradient (read) and the slots present (writable), of one
// dtype and shape and pairwise disjoint in memory (the kernels read and write them through restrict
// pointers). Returns the element count.
template <class T>
index_t check_update(const ArrayView& var, const ArrayView& grad, std::initializer_list<const ArrayView*> slots) {
    const index_t n = check_array<T>(var, {}, true);
    check_like<T>(grad, var, false);
    std::vector<const ArrayView*> all{&var, &grad};
    for (const ArrayView* s : slots)
        if (s->present) {
            check_like<T>(*s, var, true);
            all.push_back(s);
        }
    const auto bytes = static_cast<std::uintptr_t>(n) * sizeof(T);
    for (size_t i = 0; n > 0 && i < all.size(); ++i)
        for (size_t j = i + 1; j < all.size(); ++j) {
            const auto a = reinterpret_cast<std::uintptr_t>(all[i]->data), b = reinterpret_cast<std::uintptr_t>(all[j]->data);
            require(a + bytes <= b || b + bytes <= a,
                    std::string(all[j]->name) + " shares memory with " + all[i]->name + "; pass separate arrays");
        }
    return n;
}

// A finite scalar in [low, high].
inline double scalar(double v, const char* name, double low, double high) {
    require(std::isfinite(v) && v >= low && v <= high,
            std::string(name) + " must be a finite number in [" + std::to_string(low) + ", " + std::to_string(high) +
                "], got " + std::to_string(v));
    return v;
}

template <class T>
T* slot_ptr(const ArrayView& a) {
    return a.present ? static_cast<T*>(a.data) : nullptr;
}

}  // namespace optimizer_detail

template <class D>
void bind_optimizer(py::module_& m) {
    using A = typename D::Array;
    using namespace optimizer_detail;
    const double big = std::numeric_limits<double>::max();
    m.def("sgd_update", [big](const A& var_, const A& grad_, const py::object& mom_, double learning_rate,
                              double momentum, bool nesterov, double keep, std::uintptr_t stream) {
        const ArrayView var = D::view(var_, "variable"), grad = D::view(grad_, "gradient");
        const ArrayView mom = optional_view<D>(mom_, "momentum_buffer");
        const SgdStep s{scalar(learning_rate, "learning_rate", 0, big), scalar(momentum, "momentum", 0, 1),
                        scalar(keep, "keep", -big, big), nesterov};
        dispatch_float(float_dtype(var), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_update<T>(var, grad, {&mom});
            py::gil_scoped_release nogil;
            sgd_update(static_cast<T*>(var.data), static_cast<const T*>(grad.data), slot_ptr<T>(mom), n, s,
                       D::stream(stream));
        });
    }, py::arg("variable"), py::arg("gradient"), py::arg("momentum_buffer"), py::arg("learning_rate"),
       py::arg("momentum"), py::arg("nesterov"), py::arg("keep"), py::kw_only(), D::stream_arg(),
       "SGD in place: variable = variable * keep - learning_rate * gradient; with a momentum_buffer m: "
       "m = momentum * m - learning_rate * gradient, variable += m (nesterov: += momentum * m - learning_rate * "
       "gradient)");
    m.def("adam_update", [big](const A& var_, const A& grad_, const A& m_, const A& v_, const py::object& v_hat_,
                               double alpha, double one_minus_beta_1, double one_minus_beta_2, double epsilon,
                               double keep, std::uintptr_t stream) {
        const ArrayView var = D::view(var_, "variable"), grad = D::view(grad_, "gradient");
        const ArrayView mm = D::view(m_, "m"), vv = D::view(v_, "v"), vh = optional_view<D>(v_hat_, "v_hat");
        const AdamStep s{scalar(alpha, "alpha", 0, big), scalar(one_minus_beta_1, "one_minus_beta_1", 0, 1),
                         scalar(one_minus_beta_2, "one_minus_beta_2", 0, 1), scalar(epsilon, "epsilon", 0, big),
                         scalar(keep, "keep", -big, big)};
        dispatch_float(float_dtype(var), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_update<T>(var, grad, {&mm, &vv, &vh});
            py::gil_scoped_release nogil;
            adam_update(static_cast<T*>(var.data), static_cast<const T*>(grad.data), static_cast<T*>(mm.data),
                        static_cast<T*>(vv.data), slot_ptr<T>(vh), n, s, D::stream(stream));
        });
    }, py::arg("variable"), py::arg("gradient"), py::arg("m"), py::arg("v"), py::arg("v_hat"), py::arg("alpha"),
       py::arg("one_minus_beta_1"), py::arg("one_minus_beta_2"), py::arg("epsilon"), py::arg("keep"), py::kw_only(),
       D::stream_arg(),
       "Adam in place: m += (g - m) one_minus_beta_1, v += (g^2 - v) one_minus_beta_2, with a v_hat (AMSGrad) "
       "v_hat = max(v_hat, v) used for v; variable = variable * keep - alpha m / (sqrt(v) + epsilon)");
    m.def("rmsprop_update", [big](const A& var_, const A& grad_, const A& vel_, const py::object& mom_,
                                  const py::object& avg_, double learning_rate, double rho, double one_minus_rho,
                                  double momentum, double epsilon, double keep, std::uintptr_t stream) {
        const ArrayView var = D::view(var_, "variable"), grad = D::view(grad_, "gradient");
        const ArrayView vel = D::view(vel_, "velocity"), mom = optional_view<D>(mom_, "momentum_buffer"),
                        avg = optional_view<D>(avg_, "average_gradient");
        const RmspropStep s{scalar(learning_rate, "learning_rate", 0, big), scalar(rho, "rho", 0, 1),
                            scalar(one_minus_rho, "one_minus_rho", 0, 1), scalar(momentum, "momentum", 0, 1),
                            scalar(epsilon, "epsilon", 0, big), scalar(keep, "keep", -big, big)};
        dispatch_float(float_dtype(var), [&](auto t) {
            using T = decltype(t);
            const index_t n = check_update<T>(var, grad, {&vel, &mom, &avg});
            py::gil_scoped_release nogil;
            rmsprop_update(static_cast<T*>(var.data), static_cast<const T*>(grad.data), static_cast<T*>(vel.data),
                           slot_ptr<T>(mom), slot_ptr<T>(avg), n, s, D::stream(stream));
        });
    }, py::arg("variable"), py::arg("gradient"), py::arg("velocity"), py::arg("momentum_buffer"),
       py::arg("average_gradient"), py::arg("learning_rate"), py::arg("rho"), py::arg("one_minus_rho"),
       py::arg("momentum"), py::arg("epsilon"), py::arg("keep"), py::kw_only(), D::stream_arg(),
       "RMSprop in place: velocity = rho velocity + one_minus_rho g^2, with an average_gradient a (centered) "
       "a = rho a + one_minus_rho g; inc = learning_rate g / sqrt(velocity [- a^2] + epsilon); with a "
       "momentum_buffer b: b = momentum b + inc, variable = variable * keep - b, else variable * keep - inc");
}

}  // namespace cnnkit
