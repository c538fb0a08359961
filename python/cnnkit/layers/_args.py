"""Layer arguments parsed into what the layers hold: window sizes and strides as pairs, padding
modes, border specs. The generic checks (positive ints, fractions, seeds, ...) are cnnkit._checks',
re-exported here for the layers that call them as ``_args.<check>``."""

from .._checks import (boolean, finite_float, fraction, integer, is_int, nonnegative_float, positive_int,
                       refuse, seed)

__all__ = ["int_pair", "padding_mode", "data_format", "padding_2d",
           "boolean", "finite_float", "fraction", "integer", "nonnegative_float", "positive_int", "seed"]


def int_pair(value, name, minimum=1):
    vals = (value, value) if is_int(value) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = ()
    if len(vals) != 2 or not all(is_int(v) for v in vals):
        refuse(name, value, "an int or a tuple of 2 ints")
    if any(v < minimum for v in vals):
        refuse(name, value, f">= {minimum}")
    return int(vals[0]), int(vals[1])


def padding_mode(value, name="padding"):
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        refuse(name, value, '"valid" or "same"')
    return value.lower()


def data_format(value):
    if value not in (None, "channels_last"):
        raise ValueError(f'cnnkit layers are channels_last (NHWC) only, received data_format={value!r}')


def padding_2d(value, name):
    """Keras' ZeroPadding2D/Cropping2D spec: an int, (symmetric_h, symmetric_w) or
    ((top, bottom), (left, right)), all >= 0 -> ((top, bottom), (left, right))."""
    if is_int(value):
        parts = ((value, value), (value, value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            items = ()
        parts = tuple((v, v) if is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else () for v in items)
        if len(parts) != 2 or not all(len(p) == 2 and all(is_int(v) for v in p) for p in parts):
            refuse(name, value, "an int, a tuple of 2 ints or a tuple of 2 tuples of 2 ints "
                                "((top, bottom), (left, right))")
    if any(v < 0 for p in parts for v in p):
        refuse(name, value, ">= 0")
    return tuple((int(a), int(b)) for a, b in parts)
