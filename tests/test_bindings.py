"""The native bindings check their arguments the same way on both devices (csrc/bind_array.h: one
array view and one set of checks, bind_<family>.h: each binding written once for cnnkit._core and
cnnkit._cuda). The kernels' entry points are called directly, without cnnkit.ops in front: a
misaligned array and a bad geometry entry are refused with the argument named, by functions of
several families, on the CPU and (under the ``gpu`` mark) on the GPU. cnnkit._cuda's checks run
before it touches the device, so where it is built they are checked here without a GPU too."""

import re

import numpy as np
import pytest

from cnnkit import _core

try:
    from cnnkit import _cuda
except ImportError:  # a build without nvcc
    _cuda = None

needs_cuda_module = pytest.mark.skipif(_cuda is None, reason="this build has no cnnkit._cuda")

# Pooling (and im2col) geometry: a 2x2 window with stride 2 over one 2x2 image of 2 channels.
GEOM = (1, 2, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0)
BAD_ENTRIES = [2.5, 2**70, "2", None]


def native(xp):
    """The kernel module for the array module xp and the stream keyword it is called with."""
    if xp is np:
        return _core, {"stream": 0}  # _core accepts (and ignores) the stream of its twin
    return _cuda, {"stream": xp.cuda.get_current_stream().ptr}


def misaligned(xp, shape, dtype):
    """A C-contiguous array whose data starts one byte past an aligned address."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if xp is np:
        a = np.ndarray(shape, dtype, buffer=np.zeros(nbytes + 1, np.uint8), offset=1)
        assert a.flags.c_contiguous and not a.flags.aligned
    else:
        a = xp.ndarray(shape, dtype, memptr=xp.zeros(nbytes + 1, xp.uint8).data + 1)
    return a


def misaligned_calls(xp):
    """(argument name, call) for functions of every family, each with that one argument misaligned."""
    f8, i8 = xp.float64, xp.int64
    lib, kw = native(xp)
    image, pooled = (1, 2, 2, 2), (1, 1, 1, 2)
    mis = lambda shape, dtype=f8: misaligned(xp, shape, dtype)  # noqa: E731
    z = lambda shape, dtype=f8: xp.zeros(shape, dtype)  # noqa: E731
    return [
        ("x", lambda: lib.relu_forward(mis((3, 4)), z((3, 4)), **kw)),
        ("y", lambda: lib.sigmoid_forward(z((3, 4)), mis((3, 4)), **kw)),
        ("dx", lambda: lib.elu_backward(z(5), z(5), mis(5), 1.0, **kw)),
        ("x", lambda: lib.softmax_forward(mis((2, 3)), z((2, 3)), **kw)),
        ("x", lambda: lib.im2col(mis(image), z((1, 8)), GEOM, 0, 1, **kw)),
        ("w", lambda: lib.conv2d_direct_forward(z(image), mis((2, 2, 2, 3)), None, z((1, 1, 1, 3)), GEOM, False,
                                                **kw)),
        ("b", lambda: lib.bias_add(z((3, 4)), mis(4), **kw)),
        ("x", lambda: lib.avg_pool2d_forward(mis(image), z(pooled), GEOM, **kw)),
        ("argmax", lambda: lib.max_pool2d_backward(z(pooled), mis(pooled, i8), z(image), GEOM, **kw)),
        ("y", lambda: lib.global_avg_pool2d_forward(z(image), mis((1, 2)), **kw)),
        ("x", lambda: lib.batch_norm_batch_stats(mis((4, 2)), 1e-3, z(2), z(2), **kw)),
        ("invstd", lambda: lib.batch_norm_batch_stats(z((4, 2)), 1e-3, z(2), mis(2), **kw)),
        ("logits", lambda: lib.softmax_cross_entropy_forward(mis((3, 4)), z(3, i8), z(3), z(()), **kw)),
        ("labels", lambda: lib.softmax_cross_entropy_backward(z((3, 4)), mis(3, i8), 1.0, z((3, 4)), **kw)),
    ]


def geometry_calls(xp, geom):
    """Functions of the families that take a geometry, called with `geom` and arrays that fit GEOM."""
    lib, kw = native(xp)
    z = lambda shape, dtype=xp.float32: xp.zeros(shape, dtype)  # noqa: E731
    image, pooled = (1, 2, 2, 2), (1, 1, 1, 2)
    return [
        lambda: lib.im2col(z(image), z((1, 8)), geom, 0, 1, **kw),
        lambda: lib.col2im_accumulate(z((1, 8)), z(image), geom, 0, 1, **kw),
        lambda: lib.conv2d_direct_forward(z(image), z((2, 2, 2, 3)), None, z((1, 1, 1, 3)), geom, False, **kw),
        lambda: lib.max_pool2d_forward(z(image), z(pooled), None, geom, **kw),
        lambda: lib.avg_pool2d_backward(z(pooled), z(image), geom, **kw),
        lambda: lib.stochastic_pool2d_forward(z(image), z(pooled), None, geom, False, 0, **kw),
    ]


def bad_geometries():
    for i in (0, 4, 13):
        for entry in BAD_ENTRIES:
            yield GEOM[:i] + (entry,) + GEOM[i + 1:]
    yield GEOM[:13]
    yield GEOM + (0,)


def test_misaligned_arrays_are_refused_naming_the_argument(xp):
    for name, call in misaligned_calls(xp):
        with pytest.raises(ValueError, match=rf"^{name} must be aligned \(its address a multiple of 8 bytes\)$"):
            call()


def test_misaligned_float32_is_refused(xp):
    lib, kw = native(xp)
    x = misaligned(xp, (2, 3), xp.float32)
    with pytest.raises(ValueError, match="^x must be aligned .* 4 bytes"):
        lib.tanh_forward(x, xp.zeros((2, 3), xp.float32), **kw)


def test_bad_geometry_entries_are_value_errors(xp):
    for geom in bad_geometries():
        for call in geometry_calls(xp, geom):
            with pytest.raises(ValueError, match="^geometry (entries must be integers|must be a 14-tuple)"):
                call()


def test_a_good_geometry_passes_the_same_calls(xp):
    for call in geometry_calls(xp, GEOM):
        call()


def test_cpu_functions_accept_the_stream_keyword_of_their_twins():
    x = np.array([-1.0, 0.5], np.float32)
    y = np.empty_like(x)
    _core.relu_forward(x, y, stream=0)
    np.testing.assert_array_equal(y, [0.0, 0.5])
    _core.relu_forward(x, y)  # and need not be given it


def _parameters(fn):
    first = fn.__doc__.strip().splitlines()[0]
    return re.findall(r"(\w+):", first[first.index("(") + 1:])


@needs_cuda_module
def test_twins_take_the_same_arguments():
    host_only = {"build_info", "cpu_dispatch", "get_num_threads", "set_num_threads"}
    for name in sorted(n for n in dir(_core) if not n.startswith("_") and n not in host_only):
        assert _parameters(getattr(_core, name)) == _parameters(getattr(_cuda, name)), name


# cnnkit._cuda without a GPU: every call below is refused before the binding touches the device (a
# call that passed its checks would reach the kernel launch, so each has one defect).


class FakeDeviceArray:
    """Anything with __cuda_array_interface__ is a device array to cnnkit._cuda."""

    def __init__(self, shape, typestr="<f8", ptr=1 << 20, readonly=False, strides=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3}


@needs_cuda_module
def test_cuda_module_refuses_host_arrays():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="^x must be a CuPy array"):
        _cuda.relu_forward(x, x.copy(), stream=0)
    with pytest.raises(TypeError, match="^y must be a CuPy array"):
        _cuda.relu_forward(FakeDeviceArray((3, 4), "<f4"), x, stream=0)
    with pytest.raises(TypeError, match="^b must be a CuPy array"):
        _cuda.conv2d_direct_forward(FakeDeviceArray((1, 2, 2, 2)), FakeDeviceArray((2, 2, 2, 3)), np.zeros(3),
                                    FakeDeviceArray((1, 1, 1, 3)), GEOM, False, stream=0)


@needs_cuda_module
def test_cuda_module_refuses_bad_geometry_before_anything_else():
    for geom in bad_geometries():
        with pytest.raises(ValueError, match="^geometry"):
            _cuda.avg_pool2d_forward(FakeDeviceArray((1, 2, 2, 2)), FakeDeviceArray((1, 1, 1, 2)), geom, stream=0)
        with pytest.raises(ValueError, match="^geometry"):
            _cuda.im2col(None, None, geom, 0, 1, stream=0)


@needs_cuda_module
def test_cuda_module_checks_device_arrays_as_the_cpu_checks_host_arrays():
    """The same defect gets the same message from both modules: one check, two devices."""
    cases = [  # (host array, device array with the same defect)
        (misaligned(np, (3, 4), np.float64), FakeDeviceArray((3, 4), ptr=(1 << 20) + 4)),
        (np.zeros((3, 4), np.float16), FakeDeviceArray((3, 4), "<f2")),
        (np.zeros((4, 3)).T, FakeDeviceArray((3, 4), strides=(8, 24))),
        (np.zeros((3, 5)), FakeDeviceArray((3, 5))),
    ]
    for host, device in cases:
        with pytest.raises((TypeError, ValueError)) as on_cpu:
            _core.sigmoid_backward(np.zeros((3, 4)), host, np.zeros((3, 4)))
        with pytest.raises(on_cpu.type) as on_gpu:
            _cuda.sigmoid_backward(FakeDeviceArray((3, 4)), device, FakeDeviceArray((3, 4)), stream=0)
        assert str(on_gpu.value) == str(on_cpu.value)
    readonly = np.zeros((3, 4))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="^dx must be writable$") as on_cpu:
        _core.relu_backward(np.zeros((3, 4)), np.zeros((3, 4)), readonly)
    with pytest.raises(ValueError) as on_gpu:
        _cuda.relu_backward(FakeDeviceArray((3, 4)), FakeDeviceArray((3, 4)), FakeDeviceArray((3, 4), readonly=True),
                            stream=0)
    assert str(on_gpu.value) == str(on_cpu.value)


@needs_cuda_module
def test_scratch_allocator_hook_takes_a_callable_or_none():
    """cnnkit._cuda's scratch comes from an installed allocator (cnnkit.ops installs cupy.cuda.alloc
    with the GPU backend); the hook is checked without a GPU."""
    before = _cuda.has_scratch_allocator()
    try:
        with pytest.raises(TypeError, match="callable"):
            _cuda.set_scratch_allocator(3)
        _cuda.set_scratch_allocator(lambda nbytes: None)
        assert _cuda.has_scratch_allocator()
        _cuda.set_scratch_allocator(None)
        assert not _cuda.has_scratch_allocator()
    finally:
        if before:
            import cupy

            _cuda.set_scratch_allocator(cupy.cuda.alloc)
