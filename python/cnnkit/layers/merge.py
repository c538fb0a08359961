"""Layers that merge a list of tensors: Add, Subtract, Multiply, Average and Concatenate.

They take a list of arrays (``multi_input``); backward returns one gradient per input (None where
``need_dx`` is false). The elementwise ones take inputs of one rank whose sizes agree or are 1, and
broadcast those, as Keras' merge layers do (a squeeze-and-excitation block multiplies (N, H, W, C)
by (N, 1, 1, C)); a broadcast input's gradient is summed back to its shape. Gradients may be ``dy``
itself or views of it, so callers must not write into them."""

import numbers

from ..ops import get_array_module
from .base import Layer, format_shape

__all__ = ["Add", "Subtract", "Multiply", "Average", "Concatenate"]


def _merged_dim(dims):
    sizes = {d for d in dims if d is not None and d != 1}
    if sizes:
        return sizes.pop()
    return None if any(d is None for d in dims) else 1


def _unbroadcast(g, shape):
    """g summed over the axes where an input of ``shape`` was stretched (same rank)."""
    if tuple(g.shape) == tuple(shape):
        return g
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True)


def _iadd(y, x):
    y += x
    return y


def _imul(y, x):
    y *= x
    return y


class _Merge(Layer):
    multi_input = True
    _arity = None  # exact number of inputs, when the operation fixes it

    def _check_count(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or not all(isinstance(s, tuple) for s in input_shapes):
            raise TypeError(f"{type(self).__name__} {self.name!r} takes a list of tensors, received "
                            f"{input_shapes!r}")
        n = len(input_shapes)
        if (self._arity is not None and n != self._arity) or n < 2:
            want = f"exactly {self._arity}" if self._arity else "at least 2"
            raise ValueError(f"{type(self).__name__} {self.name!r} takes {want} inputs, received {n}: "
                             f"{', '.join(format_shape(s) for s in input_shapes)}")

    def _check_input_shape(self, input_shapes):
        self._check_count(input_shapes)
        shapes = ", ".join(format_shape(s) for s in input_shapes)
        if len({len(s) for s in input_shapes}) != 1 or any(
                len({d for d in dims if d is not None and d != 1}) > 1 for dims in zip(*input_shapes)):
            raise ValueError(f"{type(self).__name__} {self.name!r} needs inputs of one rank whose sizes agree or "
                             f"are 1 (broadcast), received shapes {shapes}")

    def compute_output_shape(self, input_shapes):
        return tuple(_merged_dim(dims) for dims in zip(*input_shapes))


class Add(_Merge):
    """The sum of the inputs."""

    def forward(self, xs, training=False):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x if x.shape != y.shape else _iadd(y, x)
        return y, [x.shape for x in xs]

    def backward(self, shapes, dy, need_dx=True):
        return [_unbroadcast(dy, s) if need else None for s, need in zip(shapes, need_dx)]


class Subtract(_Merge):
    """inputs[0] - inputs[1]."""

    _arity = 2

    def forward(self, xs, training=False):
        return xs[0] - xs[1], [xs[0].shape, xs[1].shape]

    def backward(self, shapes, dy, need_dx=True):
        return [_unbroadcast(dy, shapes[0]) if need_dx[0] else None,
                _unbroadcast(-dy, shapes[1]) if need_dx[1] else None]


class Multiply(_Merge):
    """The elementwise product of the inputs."""

    def forward(self, xs, training=False):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x if x.shape != y.shape else _imul(y, x)
        return y, xs

    def backward(self, xs, dy, need_dx=True):
        dxs = []
        for i, need in enumerate(need_dx):
            if not need:
                dxs.append(None)
                continue
            g = dy
            for j, x in enumerate(xs):  # the product of the others, not y / x_i (x_i may be 0)
                if j != i:
                    g = g * x
            dxs.append(_unbroadcast(g, xs[i].shape))
        return dxs


class Average(_Merge):
    """The elementwise mean of the inputs."""

    def forward(self, xs, training=False):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x if x.shape != y.shape else _iadd(y, x)
        y *= y.dtype.type(1 / len(xs))
        return y, [x.shape for x in xs]

    def backward(self, shapes, dy, need_dx=True):
        g = dy * dy.dtype.type(1 / len(shapes))
        return [_unbroadcast(g, s) if need else None for s, need in zip(shapes, need_dx)]


class Concatenate(_Merge):
    """The inputs joined along ``axis`` (default the last); the other axes must match."""

    def __init__(self, axis=-1, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int, received axis={axis!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _resolved_axis(self, rank):
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Concatenate {self.name!r}: axis must name a non-batch axis of the {rank}-D "
                             f"inputs (1..{rank - 1} or -{rank - 1}..-1), received axis={self.axis}")
        return self.axis % rank

    def _check_input_shape(self, input_shapes):
        self._check_count(input_shapes)
        shapes = ", ".join(format_shape(s) for s in input_shapes)
        if len({len(s) for s in input_shapes}) != 1:
            raise ValueError(f"Concatenate {self.name!r} needs inputs of one rank, received shapes {shapes}")
        axis = self._resolved_axis(len(input_shapes[0]))
        for k, dims in enumerate(zip(*input_shapes)):
            if k != axis and len({d for d in dims if d is not None}) > 1:
                raise ValueError(f"Concatenate {self.name!r} needs inputs that match on every axis but "
                                 f"axis={self.axis}, received shapes {shapes}")

    def compute_output_shape(self, input_shapes):
        axis = self._resolved_axis(len(input_shapes[0]))
        out = [_merged_dim(dims) for dims in zip(*input_shapes)]
        sizes = [s[axis] for s in input_shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def forward(self, xs, training=False):
        xp = get_array_module(*xs)
        axis = self._resolved_axis(xs[0].ndim)
        return xp.concatenate(xs, axis=axis), [x.shape[axis] for x in xs]

    def backward(self, sizes, dy, need_dx=True):
        axis = self._resolved_axis(dy.ndim)
        dxs, start = [], 0
        for size, need in zip(sizes, need_dx):
            index = [slice(None)] * dy.ndim
            index[axis] = slice(start, start + size)
            dxs.append(dy[tuple(index)] if need else None)
            start += size
        return dxs

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
