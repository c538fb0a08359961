"""What the property-based tests (test_fuzz_*.py) share: array layouts, argument strategies, an
independent validity oracle for window arguments, and the one rule every fuzzed call obeys.

The rule (``outcome``): a call either returns a result equal to ``cnnkit.ops.reference`` (computed in
float64 from the same values) or raises ValueError/TypeError, and it never modifies its inputs (every
input lives in a buffer that is compared byte for byte afterwards, guard bands included). Whether a
call must succeed or must be refused is decided here, from the documented rules, without calling
cnnkit.ops: a refusal of a valid call is as much a failure as a crash or a wrong number.
"""

import numbers
import warnings

import numpy as np
from hypothesis import strategies as st

from cnnkit.ops.reference import _common as ref_common
from helpers import rel_error

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
REFUSED = (np.dtype(np.float16), np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.complex128),
           np.dtype(np.bool_), np.dtype(np.uint8))
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}  # as tests/helpers.py, same reasons

# Every way the same values can be laid out in memory. "list" is not an array at all.
LAYOUTS = ("c", "c", "c", "fortran", "strided", "negative", "readonly", "unaligned", "broadcast", "list")
GUARD = 8  # elements of guard band on each side of a buffer

OK = "ok"


class Invalid(Exception):
    """Raised by the oracle: the call must be refused with one of ``self.types``."""

    def __init__(self, *types):
        super().__init__(types)
        self.types = types


class Expect:
    """Collects what an oracle finds: every independent problem of a call adds the exceptions that
    may report it (an op may check its arguments in any order, so any of them is acceptable)."""

    def __init__(self):
        self.types = set()

    def check(self, fn, *args, **kwargs):
        """fn's value, or None after recording the Invalid it raised."""
        try:
            return fn(*args, **kwargs)
        except Invalid as inv:
            self.types.update(inv.types)
            return None

    def require(self, ok, *types):
        if not ok:
            self.types.update(types or (ValueError,))
        return ok

    @property
    def ok(self):
        return not self.types

    def result(self):
        return OK if not self.types else Invalid(*sorted(self.types, key=lambda t: t.__name__))


def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


# ---------------------------------------------------------------------------------------- layouts
class Placed:
    """An input as the op sees it (``arg``), the values it holds (``values``) and the whole buffer
    behind it (``owner``) with a snapshot of its bytes, to prove the op wrote nothing there."""

    def __init__(self, arg, values, owner):
        self.arg, self.values, self.owner = arg, values, owner
        self.snapshot = None if owner is None else owner.tobytes()

    @property
    def is_array(self):
        return isinstance(self.arg, np.ndarray)

    def unchanged(self):
        return self.owner is None or self.owner.tobytes() == self.snapshot


# The fuzz tests run on the GPU too (tests/test_fuzz_gpu.py): while DEVICE holds the cupy module,
# place() copies each buffer to the device byte for byte (guard bands included) and gives the op a
# CuPy view with the host view's offset and strides (so the strided, negative, Fortran, broadcast
# and unaligned layouts are the same on the device), and outcome() hands check() host copies.
DEVICE = []


class DevicePlaced(Placed):
    """A Placed whose buffer and view live on the GPU."""

    def __init__(self, host, cp):
        arg = host.arg
        owner = host.owner if host.owner is not None else arg
        raw = np.ravel(owner, order="K").view(np.uint8) if owner.flags.c_contiguous or owner.flags.f_contiguous \
            else np.frombuffer(owner.tobytes(), np.uint8)
        offset = arg.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
        buffer = cp.asarray(raw)
        view = cp.ndarray(arg.shape, arg.dtype, memptr=buffer.data + offset, strides=arg.strides)
        self.arg, self.values, self.owner, self.snapshot = view, host.values, buffer, raw.tobytes()

    @property
    def is_array(self):
        return True

    def unchanged(self):
        return self.owner.get().tobytes() == self.snapshot


def _on_device(placed):
    if not DEVICE or not isinstance(placed.arg, np.ndarray):
        return placed  # a list stays a list: on the GPU as on the CPU, not an array
    return DevicePlaced(placed, DEVICE[0])


def _host(result):
    if isinstance(result, tuple):
        return tuple(_host(r) for r in result)
    return result.get() if hasattr(result, "__cuda_array_interface__") else result


def place(values, layout, rng):
    """``values`` (an ndarray) laid out as asked; the guard bands hold random bits (on the GPU
    while DEVICE is set)."""
    return _on_device(_place(values, layout, rng))


def _place(values, layout, rng):
    shape, dtype = values.shape, values.dtype
    size = values.size
    if layout == "list":
        return Placed(values.tolist(), values, None)
    if layout == "broadcast" and values.ndim >= 1 and shape[0] > 1:
        # stride 0 on axis 0: only when every row is equal, so use row 0 everywhere
        values = np.broadcast_to(values[:1], shape).copy()
        base = values[:1].copy()
        view = np.broadcast_to(base, shape)  # read-only, stride 0
        return Placed(view, values, base)
    if layout == "fortran" and values.ndim >= 2:
        owner = values.copy(order="F")
        return Placed(owner, values, owner)
    if layout == "strided" and values.ndim >= 1:
        owner = _random_fill(rng, shape[:-1] + (2 * shape[-1] + 1,), dtype)
        view = owner[..., 1::2]
        view[...] = values
        return Placed(view, values, owner)
    if layout == "negative" and values.ndim >= 1:
        owner = np.flip(values).copy(order="C")
        return Placed(np.flip(owner), values, owner)
    if layout == "unaligned" and dtype.itemsize > 1:
        raw = _random_fill(rng, (size * dtype.itemsize + 2 * GUARD + 1,), np.dtype(np.uint8))
        view = raw[GUARD + 1: GUARD + 1 + size * dtype.itemsize].view(dtype).reshape(shape)
        view[...] = values
        return Placed(view, values, raw)
    owner = _random_fill(rng, (size + 2 * GUARD,), dtype)
    view = owner[GUARD: GUARD + size].reshape(shape)
    view[...] = values
    if layout == "readonly":
        view.flags.writeable = False
    return Placed(view, values, owner)


def _random_fill(rng, shape, dtype):
    raw = rng.integers(0, 256, size=int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype=np.uint8)
    if dtype == np.bool_:
        raw &= 1
    return raw.view(dtype).reshape(shape).copy()


def values_of(rng, shape, dtype, scale=1.0):
    """Random finite values of ``dtype`` (normal for floats, small ints otherwise)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * scale).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.integers(-3, 4, shape).astype(dtype) if dtype.kind == "i" else rng.integers(0, 4, shape).astype(dtype)


# ---------------------------------------------------------------------------------------- strategies
seeds = st.integers(0, 2**32 - 1)
layouts = st.sampled_from(LAYOUTS)
dtypes = st.one_of(st.sampled_from(FLOATS), st.sampled_from(FLOATS), st.sampled_from(FLOATS),
                   st.sampled_from(REFUSED))

# Window sizes, strides and dilations: mostly ordinary, sometimes huge or beyond 64 bits, sometimes wrong.
_HUGE = [7, 10**6, 2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 10**30]
_BAD_SCALARS = [0, -1, -2**63, 1.0, 2.5, True, None, "2", float("nan")]


def window_values(small_max):
    """One int (or a bad value) for a stride / dilation / pool size."""
    return st.one_of(st.integers(1, small_max), st.integers(1, small_max), st.integers(1, small_max),
                     st.sampled_from(_HUGE), st.sampled_from(_BAD_SCALARS), st.just(np.int64(2)))


def int_or_pair(small_max):
    v = window_values(small_max)
    return st.one_of(v, st.tuples(v, v), st.lists(v, min_size=2, max_size=2), st.tuples(v),
                     st.tuples(v, v, v))


def paddings(allow_huge):
    small = st.integers(0, 3)
    huge = st.sampled_from([2**31, 2**40, 2**63 - 1, 2**63, 2**64]) if allow_huge else small
    number = st.one_of(small, small, small, huge, st.sampled_from([-1, 1.0, True, np.int32(1)]))
    return st.one_of(
        st.sampled_from(["valid", "same", "VALID", "Same"]),
        st.sampled_from(["valid", "same"]),
        number,
        st.tuples(number, number),
        st.tuples(st.tuples(number, number), st.tuples(number, number)),
        st.sampled_from(["full", "", "causal", None, (1,), (1, 2, 3), ((1, 2),), ((1, 2, 3), (0, 0)),
                         [[0, 1], [1, 0]], ((0, 1), 2)]),
    )


# ---------------------------------------------------------------------------------------- oracle
def parse_pair(value, minimum):
    """(a, b) ints >= minimum from an int or a 2-sequence of ints; Invalid(ValueError) otherwise."""
    if is_int(value):
        vals = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        vals = tuple(value)
    else:
        raise Invalid(ValueError)
    if any(v < minimum for v in vals):
        raise Invalid(ValueError)
    return int(vals[0]), int(vals[1])


def parse_padding(padding, hw, window, strides, dilation):
    """((top, bottom), (left, right)) by the documented rules, or Invalid(ValueError)."""
    if isinstance(padding, str):
        if padding.lower() not in ("valid", "same"):
            raise Invalid(ValueError)
        return tuple(_same_or_valid(padding, hw[i], window[i], strides[i], dilation[i]) for i in range(2))
    if is_int(padding):
        p = parse_pair(padding, 0)
        return (p[0], p[0]), (p[1], p[1])
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(is_int(v) for v in padding):
            ph, pw = parse_pair(padding, 0)
            return (ph, ph), (pw, pw)
        return parse_pair(padding[0], 0), parse_pair(padding[1], 0)
    raise Invalid(ValueError)


def _same_or_valid(padding, size, window, stride, dilation):
    span = (window - 1) * dilation + 1
    if padding.lower() == "valid":
        return 0, 0
    if span <= 64 and stride <= 64:
        # the reference's helper finds "same" by search, independently of cnnkit.ops
        return ref_common.padding_amounts(padding, size, window, stride, dilation)
    # TensorFlow's rule in closed form, for windows too large to search
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def window_geometry(hw, window, strides, dilation, padding):
    """(pads, (oh, ow)) for valid window arguments, else Invalid(ValueError)."""
    kh, kw = parse_pair(window, 1)
    sh, sw = parse_pair(strides, 1)
    dh, dw = parse_pair(dilation, 1)
    if (kh - 1) * dh + 1 > 2**40 or (kw - 1) * dw + 1 > 2**40:
        raise Invalid(ValueError)  # wider than any input we generate, so also wider than the input
    pads = parse_padding(padding, hw, (kh, kw), (sh, sw), (dh, dw))
    out = []
    for n, (a, b), k, s, d in zip(hw, pads, (kh, kw), (sh, sw), (dh, dw)):
        span = n + a + b - (k - 1) * d
        if span < 1:
            raise Invalid(ValueError)
        out.append((span - 1) // s + 1)
    return pads, tuple(out)


def float_check(placed, *, dtype=None):
    """Invalid(TypeError) unless this argument is a float32/float64 array of ``dtype`` (if given)."""
    if not placed.is_array or placed.arg.dtype not in FLOATS:
        raise Invalid(TypeError)
    if dtype is not None and placed.arg.dtype != dtype:
        raise Invalid(TypeError)


def exceeds_int64(*values):
    """Whether any window argument is 2**30 or more: such a call may be refused with ValueError even
    though it is well defined (beyond the kernels' 64-bit extents, or an empty output whose other
    dimensions multiply past NumPy's limit)."""
    flat = []
    for v in values:
        if isinstance(v, (tuple, list)):
            flat.extend(exceeds_flat(v))
        else:
            flat.append(v)
    return any(is_int(v) and abs(int(v)) >= 2**30 for v in flat)


def exceeds_flat(v):
    out = []
    for item in v:
        out.extend(exceeds_flat(item) if isinstance(item, (tuple, list)) else [item])
    return out


# ---------------------------------------------------------------------------------------- the rule
def outcome(expect, call, check, placed=(), allow_refusal=False):
    """Run ``call()`` under the rule.

    expect: OK (must return; ``check(result)`` then compares it) or an Invalid (must raise one of its
    types). allow_refusal: a valid call may also be refused with ValueError (for arguments beyond
    64 bits). placed: the Placed inputs, each checked to be unchanged afterwards."""
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        if allow_refusal and isinstance(exc, ValueError):
            pass
        elif expect is OK:
            raise AssertionError(f"a valid call was refused: {exc.__class__.__name__}: {exc}") from exc
        elif not isinstance(exc, expect.types):
            raise AssertionError(f"expected {[t.__name__ for t in expect.types]}, got "
                                 f"{exc.__class__.__name__}: {exc}") from exc
        assert str(exc), "an error without a message"
    else:
        if expect is not OK:
            raise AssertionError(f"an invalid call (expected {[t.__name__ for t in expect.types]}) "
                                 f"returned {type(result).__name__}")
        if DEVICE:
            assert all(hasattr(r, "__cuda_array_interface__") for r in
                       (result if isinstance(result, tuple) else (result,)) if r is not None), \
                "a GPU call must return CuPy arrays"
        check(_host(result))
    for i, p in enumerate(placed):
        assert p.unchanged(), f"input {i} (or the memory around it) was modified"


def reference(fn, *args, **kwargs):
    """A reference call, quiet about the floating-point warnings its textbook formulas raise."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def f64(placed):
    return None if placed is None else np.asarray(placed.values, dtype=np.float64)


def assert_matches(actual, expected, dtype, what="", atol=None):
    """actual (of dtype) equals the float64 expected value within the dtype's tolerance, relative to
    the largest expected magnitude; or, failing that, within ``atol`` absolutely where it is given:
    for results that are a cancellation (the gradient of a saturated activation, sigmoid'(30) =
    s(1 - s) with s rounding to 1, or a softmax gradient of a dy constant along the axis) and for
    float32 subnormals, which the kernels may flush to 0 as PyTorch's do."""
    assert isinstance(actual, np.ndarray), f"{what}: expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape}, expected {np.shape(expected)}"
    err = rel_error(actual, expected)
    tol = TOL[np.dtype(dtype)]
    if err > tol and atol is not None:
        finite = np.isfinite(expected)
        abs_err = np.max(np.abs(actual[finite] - expected[finite]), initial=0.0)
        assert abs_err <= atol, f"{what}: relative error {err:.3e} > {tol:.0e} and absolute {abs_err:.3e} > {atol:.3g}"
        return
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"
