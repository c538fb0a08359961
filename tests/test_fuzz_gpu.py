"""The property-based tests of convolution and pooling (test_fuzz_conv.py, test_fuzz_pool.py) run
on the GPU: the same cases and the same rule (the reference's result or a ValueError/TypeError,
inputs untouched), with every buffer copied to the device byte for byte so that strided, negative,
Fortran-ordered, broadcast and misaligned CuPy views are fuzzed too (fuzz_support.DevicePlaced)."""

import pytest

import fuzz_support
import test_fuzz_conv
import test_fuzz_pool

pytestmark = pytest.mark.gpu

FUZZED = [test_fuzz_conv.test_fuzz_conv2d, test_fuzz_conv.test_fuzz_im2col_col2im, test_fuzz_pool.test_fuzz_max_pool2d,
          test_fuzz_pool.test_fuzz_avg_pool2d, test_fuzz_pool.test_fuzz_stochastic_pool2d,
          test_fuzz_pool.test_fuzz_global_max_pool2d, test_fuzz_pool.test_fuzz_global_avg_pool2d]


@pytest.fixture
def on_gpu(cupy_xp):
    fuzz_support.DEVICE.append(cupy_xp)
    try:
        yield cupy_xp
    finally:
        fuzz_support.DEVICE.clear()


@pytest.mark.parametrize("fuzzed", FUZZED, ids=lambda f: f.__name__.replace("test_fuzz_", ""))
def test_fuzz_on_the_gpu(on_gpu, fuzzed):
    fuzzed()
