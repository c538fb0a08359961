"""Argument checks shared by layer constructors: Keras-style messages quoting the received value."""

import math
import numbers


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, received {name}={value!r}")
    return int(value)


def int_pair(value, name, minimum=1):
    vals = (value, value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = ()
    if len(vals) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"{name} must be an int or a tuple of 2 ints, received {name}={value!r}")
    if any(v < minimum for v in vals):
        raise ValueError(f"{name} must be >= {minimum}, received {name}={value!r}")
    return int(vals[0]), int(vals[1])


def padding_mode(value, name="padding"):
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f'{name} must be "valid" or "same", received {name}={value!r}')
    return value.lower()


def fraction(value, name, upper_open=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value and (
        value < 1 if upper_open else value <= 1)
    if not ok:
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {bound}, received {name}={value!r}")
    return float(value)


def data_format(value):
    if value not in (None, "channels_last"):
        raise ValueError(f'cnnkit layers are channels_last (NHWC) only, received data_format={value!r}')


def nonnegative_float(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a finite number >= 0{extra}, received {name}={value!r}")
    return float(value)


def finite_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, received {name}={value!r}")
    return float(value)


def boolean(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, received {name}={value!r}")
    return value


def integer(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, received {name}={value!r}")
    return int(value)


def seed(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be None or an int >= 0, received seed={value!r}")
    return int(value)


def padding_2d(value, name):
    """Keras' ZeroPadding2D/Cropping2D spec: an int, (symmetric_h, symmetric_w) or
    ((top, bottom), (left, right)), all >= 0 -> ((top, bottom), (left, right))."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        parts = ((value, value), (value, value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            items = ()
        parts = tuple((v, v) if is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else () for v in items)
        if len(parts) != 2 or not all(len(p) == 2 and all(is_int(v) for v in p) for p in parts):
            raise ValueError(f"{name} must be an int, a tuple of 2 ints or a tuple of 2 tuples of 2 ints "
                             f"((top, bottom), (left, right)), received {name}={value!r}")
    if any(v < 0 for p in parts for v in p):
        raise ValueError(f"{name} must be >= 0, received {name}={value!r}")
    return tuple((int(a), int(b)) for a, b in parts)
