"""Argument checks shared by layer constructors: Keras-style messages quoting the received value."""

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
