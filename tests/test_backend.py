"""The argument handling every op shares: dispatch, dtype/rank checks, padding resolution."""

import numpy as np
import pytest

import cnnkit
from cnnkit.ops import _backend
from cnnkit.ops.reference import _common


def test_info_runs(capsys):
    from cnnkit.__main__ import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("build type", "OpenMP", "SIMD flags", "CUDA module", "GPU visible"):
        assert key in out


@pytest.mark.parametrize("size", [1, 2, 5, 7, 28, 31])
@pytest.mark.parametrize("window", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_same_padding_matches_independent_search(size, window, stride, dilation):
    """The formula in ops._backend agrees with the reference's search, and gives ceil(n / s) outputs."""
    (pt, pb), _ = _backend.resolve_padding("same", (size, 1), (window, 1), (stride, 1), (dilation, 1))
    assert (pt, pb) == _common.padding_amounts("same", size, window, stride, dilation)
    span = (window - 1) * dilation + 1
    assert (size + pt + pb - span) // stride + 1 == -(-size // stride)


def test_padding_specs():
    r = _backend.resolve_padding
    assert r("VALID", (5, 5), (3, 3), (1, 1), (1, 1)) == ((0, 0), (0, 0))
    assert r(2, (5, 5), (3, 3), (1, 1), (1, 1)) == ((2, 2), (2, 2))
    assert r((1, 2), (5, 5), (3, 3), (1, 1), (1, 1)) == ((1, 1), (2, 2))
    assert r(((0, 1), (2, 3)), (5, 5), (3, 3), (1, 1), (1, 1)) == ((0, 1), (2, 3))
    # TensorFlow puts the odd pixel at the end: 4 wide, window 2, stride 1 -> pad (0, 1)
    assert r("same", (4, 4), (2, 2), (1, 1), (1, 1)) == ((0, 1), (0, 1))


@pytest.mark.parametrize("bad", ["full", -1, (1, -1), ((1, 2, 3), (0, 0)), 1.5, None])
def test_bad_padding_is_a_value_error(bad):
    with pytest.raises(ValueError, match="padding"):
        _backend.geometry((1, 5, 5, 1), 3, 1, bad, 1)


@pytest.mark.parametrize("name,kwargs", [
    ("strides", dict(strides=0)), ("strides", dict(strides=(1, 0))), ("dilation", dict(dilation=0)),
    ("kernel_size", dict(window=(0, 3))), ("strides", dict(strides=True)), ("strides", dict(strides=(1, 2, 3))),
])
def test_bad_window_arguments_name_themselves(name, kwargs):
    args = dict(x_shape=(2, 5, 5, 3), window=3, strides=1, padding="valid", dilation=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        _backend.geometry(**args)


def test_empty_output_is_refused_with_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 1\)"):
        _backend.geometry((2, 4, 4, 1), 5, 1, "valid", 1)
    with pytest.raises(ValueError, match="dilation"):
        _backend.geometry((2, 5, 5, 1), 3, 1, "valid", 3)


def test_check_float_refuses_ints_halves_and_mixtures():
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _backend.check_float(np.zeros((2, 2), np.int64), "x")
    with pytest.raises(TypeError, match="w must be float32 or float64"):
        _backend.check_float(np.zeros((2, 2), np.float16), "w")
    with pytest.raises(TypeError, match="mixing float32 and float64"):
        _backend.check_float(np.zeros((2, 2), np.float64), "w", dtype=np.float32)
    with pytest.raises(ValueError, match=r"x must be 4-D.*\(2, 2\)"):
        _backend.check_float(np.zeros((2, 2), np.float32), "x", ndim=4)
    with pytest.raises(TypeError, match="x must be an array"):
        _backend.check_float([[1.0]], "x")


def test_non_contiguous_input_is_made_contiguous():
    a = np.random.default_rng(0).random((4, 6)).astype(np.float32)[:, ::2]
    b = _backend.check_float(a, "x")
    assert b.flags.c_contiguous and np.array_equal(a, b)


def test_mixing_array_libraries_or_types_is_a_type_error():
    class FakeCupy:
        __module__ = "cupy._core.core"

    with pytest.raises(TypeError, match="mix"):
        _backend.backend(np.zeros(1), FakeCupy())
    with pytest.raises(TypeError):
        _backend.backend([1.0])


def test_workspace_limit_is_validated_and_used():
    old = cnnkit.config.workspace_limit
    try:
        cnnkit.config.workspace_limit = 1000
        assert _backend.workspace_rows(100, 10**6) == 10
        assert _backend.workspace_rows(10**6, 10**6) == 1   # at least one row
        for bad in (0, -5, 1.5, "64"):
            with pytest.raises(ValueError, match="workspace_limit"):
                cnnkit.config.workspace_limit = bad
    finally:
        cnnkit.config.workspace_limit = old


def test_reference_rng_is_uniform_and_seeded():
    u = _common.uniform01(123, np.arange(200_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert np.array_equal(u, _common.uniform01(123, np.arange(200_000)))
    assert not np.array_equal(u[:100], _common.uniform01(124, np.arange(100)))


def test_only_the_ops_backend_imports_the_native_module():
    """Layers and everything above ops never touch cnnkit._core directly (STYLE: one straight line)."""
    import pathlib
    import re

    root = pathlib.Path(cnnkit.__file__).parent
    pattern = re.compile(r"(from\s+\S*\s+import\s+.*\b_core\b|import\s+\S*_core\b|\b_core\.)")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "_backend.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_core_stub_lists_every_native_function():
    """python/cnnkit/_core.pyi (tools/gen_stub.sh) stays in step with the built module."""
    import pathlib
    import re

    stub = pathlib.Path(cnnkit.__file__).parent / "_core.pyi"
    assert stub.exists(), "the _core.pyi stub is not installed with the package"
    declared = set(re.findall(r"^def (\w+)\(", stub.read_text(), re.M))
    lib = _backend._cpu().lib
    built = {n for n in dir(lib) if not n.startswith("_") and callable(getattr(lib, n))}
    assert declared == built, f"missing from stub: {built - declared}; stale in stub: {declared - built}"
