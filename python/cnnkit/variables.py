"""``Variable``: a named, mutable weight array (NumPy or CuPy) and its gradient.

Layers create variables with ``Layer.add_weight``; optimizers update ``variable.value`` in place
(never rebinding it, so views handed out earlier stay valid); ``Model.to(device)`` moves them.
"""

import numpy as np

from .ops import autodiff, to_host

__all__ = ["Variable"]


class Variable(autodiff._Arithmetic):
    """A weight: ``value`` (an array), ``grad`` (None until a backward pass fills it), ``trainable``
    (whether optimizers update it) and an optional ``regularizer`` (a callable with ``__call__(w)``
    -> penalty and ``gradient(w)`` -> d penalty / dw)."""

    __slots__ = ("value", "grad", "name", "trainable", "regularizer", "__weakref__")
    __array_ufunc__ = None  # ``array * variable`` defers to Variable.__rmul__ (a recorded op)
    __array_priority__ = 1000.0

    # array-like reads for a layer's call: ops take the variable itself and record its gradient
    ndim = property(lambda self: self.value.ndim)

    def __getitem__(self, key):
        return autodiff._ops().getitem(self, key)

    def __init__(self, value, name="variable", trainable=True, regularizer=None):
        self.value = value
        self.grad = None
        self.name = name
        self.trainable = bool(trainable)
        self.regularizer = regularizer

    @property
    def shape(self):
        return tuple(self.value.shape)

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self):
        return int(self.value.size)

    def numpy(self):
        """A NumPy copy of the value (copied off the GPU when needed)."""
        v = self.value
        return v.get() if hasattr(v, "get") else np.array(v)

    def assign(self, new_value):
        """Overwrite the value in place; ValueError when the shape differs."""
        shape = tuple(getattr(new_value, "shape", np.shape(new_value)))
        if shape != self.shape:
            raise ValueError(f"cannot assign a value of shape {shape} to variable {self.name!r} of shape "
                             f"{self.shape}")
        if hasattr(self.value, "get"):  # CuPy: copy host data over
            import cupy

            self.value[...] = cupy.asarray(new_value, dtype=self.value.dtype)
        else:
            self.value[...] = np.asarray(to_host(new_value), dtype=self.value.dtype)

    def accumulate_grad(self, g):
        """Add g to the gradient (set it when there is none yet): shared layers sum their grads."""
        if self.grad is None:
            self.grad = g
        else:
            self.grad = self.grad + g

    def __repr__(self):
        return f"<Variable {self.name!r} shape={self.shape} dtype={self.dtype} trainable={self.trainable}>"


autodiff.register_variable_type(Variable)
