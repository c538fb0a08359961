"""GPU-only checks (marked ``gpu``; skipped cleanly without CuPy, cnnkit._cuda and a GPU): kernels
run on CuPy's current stream, NumPy/CuPy mixtures are TypeErrors, DLPack in and out with PyTorch,
kernel faults become RuntimeErrors naming the kernel, seeded dropout and stochastic pooling repeat
and match the CPU bit for bit, TF32 only under cnnkit.config.allow_tf32, and no op reads its data
back to the host. Every op's numerical checks run on the GPU through the ``xp`` fixture of the
per-family test files."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnkit
from cnnkit import ops
from cnnkit.ops import _backend
from cnnkit.ops import convolution as conv_ops
from cnnkit.ops import reference as ref
from helpers import assert_close, rel_error, to_numpy

pytestmark = pytest.mark.gpu


@pytest.fixture
def cp(cupy_xp):
    return cupy_xp


# A kernel that spins for about `spins` clock cycles, then fills x with v: work that finishes late
# on the stream it was queued on, so an op that ran on any other stream would read stale data.
_LATE_FILL = r"""
extern "C" __global__ void late_fill(float* x, long long n, float v, long long spins) {
    const long long t0 = clock64();
    while (clock64() - t0 < spins) {}
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x)
        x[i] = v;
}
"""


def test_kernels_run_on_cupys_current_stream(cp):
    """On a non-blocking stream (no implicit ordering with the legacy default stream), cnnkit's
    kernels must see what an earlier, slow kernel on that stream wrote, and CuPy work queued after
    them must see their output."""
    late_fill = cp.RawKernel(_LATE_FILL, "late_fill")
    n = 1 << 22
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        x = cp.zeros((16, 64, 64, 64), cp.float32)
        late_fill((256,), (256,), (x, cp.int64(n), cp.float32(-3.0), cp.int64(200_000_000)))
        y = ops.relu(x)                      # must wait for late_fill: all zeros
        z = ops.leaky_relu(x, alpha=0.5)     # -1.5 everywhere
        s = ops.softmax(x.reshape(-1, 64))   # 1/64 everywhere
        w = cp.ones((3, 3, 64, 8), cp.float32)
        c = ops.conv2d(x, w, padding="same")  # im2col + cuBLAS on the same stream
        total = float(z.sum())               # CuPy after cnnkit, on the same stream
    stream.synchronize()
    assert float(cp.abs(y).max()) == 0.0
    assert total == pytest.approx(-1.5 * n)
    np.testing.assert_allclose(to_numpy(s), 1 / 64, rtol=1e-6)
    assert float(c[0, 1, 1, 0]) == pytest.approx(-3.0 * 9 * 64)


def test_workspace_is_not_shared_across_streams(cp, rng):
    """conv2d's cached im2col buffer is reused only on the stream that last used it."""
    x = cp.asarray(rng.standard_normal((4, 9, 9, 5)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((3, 3, 5, 6)).astype(np.float32))
    expected = ref.conv2d(to_numpy(x).astype(np.float64), to_numpy(w).astype(np.float64))
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(2)]
    outs = []
    for s in streams * 2:
        with s:
            outs.append(ops.conv2d(x, w))
    for s in streams:
        s.synchronize()
    for y in outs:
        assert_close(y, expected, np.float32)


def test_mixing_numpy_and_cupy_is_a_type_error(cp):
    x = np.ones((2, 5, 5, 3), np.float32)
    w = cp.ones((3, 3, 3, 4), cp.float32)
    for call in (lambda: ops.conv2d(x, w), lambda: ops.conv2d(cp.asarray(x), cp.asnumpy(w)),
                 lambda: ops.relu(cp.asarray(x), out=x), lambda: ops.dense(x[:, 0, 0], w[0, 0]),
                 lambda: ops.softmax_cross_entropy(cp.ones((2, 3)), np.array([0, 1]))):
        with pytest.raises(TypeError, match="mix"):
            call()


def test_dlpack_round_trip_with_pytorch(cp, rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA build of PyTorch")
    x = torch.randn(2, 9, 8, 3, device="cuda", dtype=torch.float32)
    w = torch.randn(3, 3, 3, 5, device="cuda", dtype=torch.float32)
    assert _backend.as_array(x).data.ptr == x.data_ptr()  # a view, not a copy
    y = ops.conv2d(x, w, padding="same")
    assert isinstance(y, cp.ndarray)
    back = torch.from_dlpack(y)
    assert back.device.type == "cuda" and back.data_ptr() == y.data.ptr
    expected = ref.conv2d(x.cpu().double().numpy(), w.cpu().double().numpy(), padding="same")
    assert_close(back.cpu().numpy(), expected, np.float32)
    r = torch.from_dlpack(ops.relu(x))
    assert torch.equal(r, torch.relu(x))
    labels = torch.tensor([1, 0], device="cuda")
    loss = ops.softmax_cross_entropy(torch.randn(2, 4, device="cuda", dtype=torch.float64), labels)
    assert np.isfinite(float(loss))
    # NumPy with a CUDA tensor is a mixture too
    with pytest.raises(TypeError, match="mix"):
        ops.conv2d(x.cpu().numpy(), w)


def test_launch_errors_are_runtime_errors_naming_the_kernel(cp):
    """An invalid launch configuration is reported at the launch; the context survives it."""
    from cnnkit import _cuda

    with pytest.raises(RuntimeError, match="selftest_invalid_launch"):
        _cuda._launch_fault_selftest(stream=cp.cuda.get_current_stream().ptr)
    x = cp.asarray(np.array([-1.0, 2.0], np.float32))
    np.testing.assert_array_equal(to_numpy(ops.relu(x)), [0, 2])


def test_failed_scratch_allocation_is_a_memory_error_that_leaves_no_error_behind(cp):
    """Issue 22: a failed scratch allocation was thrown, but the runtime's last error stayed set, so
    the next healthy kernel's launch check reported it. Now: MemoryError naming the operation, and
    the next launch is clean."""
    from cnnkit import _cuda

    with pytest.raises(MemoryError, match="selftest_scratch"):
        _cuda._scratch_fault_selftest(stream=cp.cuda.get_current_stream().ptr)
    x = cp.asarray(np.array([-1.0, 2.0], np.float32))
    np.testing.assert_array_equal(to_numpy(ops.relu(x)), [0, 2])


def test_scratch_comes_from_cupys_pool(cp):
    """Issue 22: kernel scratch is taken with cupy.cuda.alloc (CuPy's pool on the current stream),
    not cudaMallocAsync beside it; CuPy's out-of-memory error becomes a MemoryError naming the op."""
    from cnnkit import _cuda

    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal((64, 3)).astype(np.float32))
    g, b = cp.ones(3, cp.float32), cp.zeros(3, cp.float32)
    mm, mv = cp.zeros(3, cp.float32), cp.ones(3, cp.float32)
    ops.batch_norm(x, g, b, mm, mv, training=True)  # the backend is up: CuPy's allocator installed
    assert _cuda.has_scratch_allocator()
    calls = []

    def counting(nbytes):
        calls.append(nbytes)
        return cp.cuda.alloc(nbytes)

    def refusing(nbytes):
        raise cp.cuda.memory.OutOfMemoryError(nbytes, 0, 0)

    try:
        _cuda.set_scratch_allocator(counting)
        y = ops.batch_norm(x, g, b, mm, mv, training=False)
        assert calls and all(n > 0 for n in calls)
        assert_close(y, ref.batch_norm(to_numpy(x).astype(np.float64), np.ones(3), np.zeros(3), to_numpy(mm),
                                       to_numpy(mv)), np.float32)
        _cuda.set_scratch_allocator(refusing)
        with pytest.raises(MemoryError, match="batch_norm"):
            ops.batch_norm(x, g, b, mm, mv, training=False)
    finally:
        _cuda.set_scratch_allocator(cp.cuda.alloc)
    np.testing.assert_array_equal(to_numpy(ops.relu(cp.asarray(np.array([-1.0, 2.0], np.float32)))), [0, 2])


def test_memory_fault_is_a_runtime_error_naming_the_kernel(cp):
    """A kernel that reads an invalid address (in a throwaway process: the fault kills the CUDA
    context). With sync checks on, the error names the kernel that faulted."""
    code = textwrap.dedent("""
        import cupy
        from cnnkit import _cuda
        _cuda.set_sync_checks(True)
        try:
            _cuda._memory_fault_selftest(stream=cupy.cuda.get_current_stream().ptr)
        except RuntimeError as exc:
            print("RAISED", exc)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "RAISED" in out.stdout, out.stdout + out.stderr
    assert "selftest_memory_fault" in out.stdout and "faulted" in out.stdout


def test_sync_checks_switch(cp):
    from cnnkit import _cuda

    before = _cuda.get_sync_checks()
    try:
        _cuda.set_sync_checks(True)
        x = cp.asarray(np.linspace(-1, 1, 1001).astype(np.float32))
        np.testing.assert_array_equal(to_numpy(ops.relu(x)), np.maximum(to_numpy(x), 0))
        assert _cuda.build_info()["sync_checks"] is True
    finally:
        _cuda.set_sync_checks(before)


def test_dropout_and_stochastic_pooling_repeat_and_match_the_cpu(cp, rng):
    x = rng.standard_normal((4, 16, 16, 8)).astype(np.float32)
    xd = cp.asarray(x)
    for seed in (0, 12345, 2**64 - 1):
        a, b = to_numpy(ops.dropout(xd, 0.3, seed)), to_numpy(ops.dropout(xd, 0.3, seed))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, ops.dropout(x, 0.3, seed))  # the same hash: the same mask
        p = to_numpy(ops.stochastic_pool2d(xd, 2, training=True, seed=seed))
        np.testing.assert_array_equal(p, to_numpy(ops.stochastic_pool2d(xd, 2, training=True, seed=seed)))
        np.testing.assert_array_equal(p, ops.stochastic_pool2d(x, 2, training=True, seed=seed))
    assert not np.array_equal(to_numpy(ops.dropout(xd, 0.3, 1)), to_numpy(ops.dropout(xd, 0.3, 2)))


def test_tf32_only_when_allowed(cp, rng, monkeypatch):
    """A long reduction (K = 3*3*256 = 2304) in float32: FP32 cuBLAS stays within the usual float32
    error of a float64 reference; with allow_tf32 the inputs are rounded to 10 mantissa bits and the
    error grows by orders of magnitude. CuPy's own compute type is restored after each GEMM."""
    from cupy._core import _routines_linalg as linalg

    x = rng.standard_normal((8, 14, 14, 256)).astype(np.float32)
    w = rng.standard_normal((3, 3, 256, 64)).astype(np.float32)
    expected = ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding="same")
    xd, wd = cp.asarray(x), cp.asarray(w)
    before = linalg.get_compute_type(np.float32)
    monkeypatch.setattr(conv_ops, "_GPU_DIRECT_MAX_K", 0)
    monkeypatch.setattr(cnnkit.config, "allow_tf32", False)
    fp32 = rel_error(ops.conv2d(xd, wd, padding="same"), expected)
    monkeypatch.setattr(cnnkit.config, "allow_tf32", True)
    tf32 = rel_error(ops.conv2d(xd, wd, padding="same"), expected)
    assert linalg.get_compute_type(np.float32) == before
    assert fp32 < 1e-5, f"FP32 error {fp32:.2e}"
    assert tf32 > 20 * fp32, f"TF32 error {tf32:.2e} vs FP32 {fp32:.2e}: TF32 was not used"
    # dense follows the same flag
    a = cp.asarray(rng.standard_normal((256, 2048)).astype(np.float32))
    b = cp.asarray(rng.standard_normal((2048, 128)).astype(np.float32))
    exact = to_numpy(a).astype(np.float64) @ to_numpy(b).astype(np.float64)
    monkeypatch.setattr(cnnkit.config, "allow_tf32", False)
    assert rel_error(ops.dense(a, b), exact) < 1e-5


def _every_family(cp, x, w, b):
    """A forward and backward of every op family on CuPy arrays (float labels: no range check)."""
    g, mm, mv = cp.ones(4, cp.float32), cp.zeros(4, cp.float32), cp.ones(4, cp.float32)
    y = ops.conv2d(x, w, b, padding="same")
    ops.conv2d_backward(y, x, w, b, padding="same")
    first = ops.conv2d(x[..., :1], w[:, :, :1], b)  # the direct kernels
    ops.conv2d_backward(first, x[..., :1], w[:, :, :1], b, need_dx=False)
    for name in ("max_pool2d", "avg_pool2d"):
        p = getattr(ops, name)(y, 2)
        getattr(ops, name + "_backward")(p, y, 2)
    ops.global_avg_pool2d_backward(ops.global_avg_pool2d(y), y)
    ops.global_max_pool2d_backward(ops.global_max_pool2d(y), y)
    ops.stochastic_pool2d_backward(ops.stochastic_pool2d(y, 2, training=True, seed=1), y, 2,
                                   training=True, seed=1)
    n = ops.batch_norm(y, g, b, mm, mv, training=True)
    ops.batch_norm_backward(n, y, g, b, mm, mv, training=True)
    for name in ("relu", "sigmoid", "tanh", "elu", "leaky_relu", "softmax", "log_softmax"):
        a = getattr(ops, name)(n)
        getattr(ops, name + "_backward")(a, n)
    ops.dropout_backward(ops.dropout(n, 0.5, 3), n, 0.5, 3)
    flat = n.reshape(2, -1)
    d = ops.dense(flat, cp.ones((flat.shape[1], 10), cp.float32))
    targets = cp.full((2, 10), 0.1, cp.float32)
    return ops.softmax_cross_entropy(d, targets), ops.softmax_cross_entropy_backward(d, targets)


def test_ops_make_no_host_round_trip(cp, rng):
    """No op waits for the GPU: queued behind a kernel that spins for about a second, a forward and
    backward of every family (integer labels' range check aside) returns while that kernel is still
    running, so none of them read data back or synchronized. Then the results are checked."""
    late_fill = cp.RawKernel(_LATE_FILL, "late_fill")
    x = cp.asarray(rng.standard_normal((2, 9, 9, 3)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    b = cp.asarray(rng.standard_normal(4).astype(np.float32))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        _every_family(cp, x, w, b)  # warm-up: cuBLAS handles, the memory pool, module loading
        stream.synchronize()
        late_fill((1,), (32,), (x, cp.int64(0), cp.float32(0), cp.int64(2_000_000_000)))
        loss, dlogits = _every_family(cp, x, w, b)
        still_running = not stream.done
    stream.synchronize()
    assert still_running, "an op synchronized with the GPU (or the spin kernel was too short)"
    assert np.isfinite(float(loss)) and bool(cp.isfinite(dlogits).all())


def test_build_info_names_the_architectures(cp):
    from cnnkit import _cuda

    info = _cuda.build_info()
    assert "90" in info["cuda_architectures"] and info["cuda_runtime_version"] >= 12000
    assert _cuda.device_count() >= 1
    assert _backend.backend(cp.ones(1)).name == "gpu"


def test_arrays_on_another_device_are_refused(cp):
    """The kernels run on the current device; a CuPy array made on another one is a ValueError naming
    both devices, not an illegal address (needs two GPUs)."""
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cp.cuda.Device(1):
        x = cp.ones((2, 3), cp.float32)
    with cp.cuda.Device(0):
        with pytest.raises(ValueError, match="arrays on GPU 1 were given while the current device is GPU 0"):
            ops.relu(x)
    with cp.cuda.Device(1):
        assert float(ops.relu(x).sum()) == 6.0
