"""normalize, as keras.utils.normalize."""

from .. import ops

__all__ = ["normalize"]


def normalize(x, axis=-1, order=2):
    """x divided by its L-``order`` norm along ``axis`` (slices whose norm is 0 are left as they
    are). Works on NumPy and CuPy arrays; integer input gives float64, as in Keras."""
    if isinstance(order, bool) or not (order == float("inf") or isinstance(order, (int, float)) and order >= 1):
        raise ValueError(f"order must be a number >= 1 or inf, received order={order!r}")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"axis must be an int, received axis={axis!r}")
    xp = ops.get_array_module(x)
    x = xp.asarray(x)
    norm = xp.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    norm = xp.where(norm == 0, xp.ones_like(norm), norm)
    return x / norm
