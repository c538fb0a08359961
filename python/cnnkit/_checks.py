"""Argument checks for the framework's constructors and methods (layers, losses, metrics, optimizers,
schedules, callbacks, fit): each returns the value as the type it stands for (int, float, bool) or
raises with Keras' kind of message, which names the argument and quotes what was received:
``units must be a positive int, received units=0``. The quote is cut at 200 characters, since
configs read from files reach these checks too. (The ops check their array arguments themselves.)

A value of the wrong kind is a ValueError like one out of range, except where the argument's kind
is the whole point (``integer``, ``boolean``, ``string``: TypeError).
"""

import math
import numbers

import numpy as np

__all__ = ["is_int", "refuse", "integer", "int_at_least", "positive_int", "seed", "number", "fraction",
           "nonnegative_float", "finite_float", "boolean", "string"]


def is_int(value):
    """An integer and not a bool (True is an int to Python, never to an argument check)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def refuse(name, value, expected, error=ValueError, owner=None):
    """Raise ``error("[owner ]name must be expected, received name=value")``."""
    where = f"{owner} " if owner else ""
    raise error(f"{where}{name} must be {expected}, received {name}={value!r:.200}")


def integer(value, name, allow_none=False):
    """Any int (an axis, a class id to ignore); TypeError otherwise."""
    if is_int(value) or value is None and allow_none:
        return None if value is None else int(value)
    refuse(name, value, "an int or None" if allow_none else "an int", TypeError)


def int_at_least(value, name, minimum, allow_none=False, owner=None):
    """An int >= minimum ("a positive int" for 1); ValueError otherwise."""
    if value is None and allow_none:
        return None
    if is_int(value) and value >= minimum:
        return int(value)
    expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    refuse(name, value, expected + (" or None" if allow_none else ""), owner=owner)


def positive_int(value, name):
    return int_at_least(value, name, 1)


def seed(value):
    """A random seed: None or an int >= 0."""
    return int_at_least(value, "seed", 0, allow_none=True)


def number(value, name, low=None, high=None, low_open=False, high_open=False, allow_none=False, owner=None,
           expected=None):
    """A finite real number (not a bool) within the bounds given, as a float; ValueError otherwise.
    ``expected`` replaces the description of the bounds in the message."""
    if value is None and allow_none:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
            and (low is None or (value > low if low_open else value >= low)) \
            and (high is None or (value < high if high_open else value <= high)):
        return float(value)
    if expected is None:
        if low is not None and high is not None:
            expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            expected = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            expected = f"a finite number {'<' if high_open else '<='} {high:g}"
        else:
            expected = "a finite number"
    refuse(name, value, expected + (" or None" if allow_none else ""), owner=owner)


def fraction(value, name, upper_open=True):
    """A number in [0, 1) (a rate, a split), or [0, 1] with upper_open=False (a threshold)."""
    return number(value, name, 0, 1, high_open=upper_open)


def nonnegative_float(value, name, allow_none=False):
    return number(value, name, low=0, allow_none=allow_none)


def finite_float(value, name):
    return number(value, name)


def boolean(value, name):
    """True or False (NumPy's bools too); TypeError otherwise: 0, 1 and "yes" are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    refuse(name, value, "True or False", TypeError)


def string(value, name, allow_none=False):
    if isinstance(value, str) or value is None and allow_none:
        return value
    refuse(name, value, "a string or None" if allow_none else "a string", TypeError)
