#!/usr/bin/env bash
# tools/gpu_check.sh: every GPU check of issues 4, 8 and 22 in ONE device call, within about 7 minutes.
#
#   run(command="bash tools/gpu_check.sh", timeout_s=540)      # from the repo root, on the GPU machine
#
# Stages, most important first; each is time-boxed and skipped when too little of the budget is left,
# and each writes one log under $OUT (at most 8 files come back):
#   0. the driver: stop at once, saying what to install, when it is too old for the CUDA runtime
#   1. build.log       pip install into /tmp/site (CPU + CUDA modules for this GPU only, -lineinfo so
#                      that compute-sanitizer names source lines)
#   2. pytest_ops.log  pytest -m gpu over the op families, the GPU-only tests and the fallback tests
#   3. sanitizer.log   compute-sanitizer: memcheck over the whole gpu suite with CuPy's memory pool off
#                      (an access past an array's end inside a pooled block would go unseen),
#                      racecheck over the kernels with shared memory, initcheck over the op tests
#   4. bench_gpu.log   benchmarks/bench_ops.py --device gpu (cnnkit GPU vs cuDNN vs naive CuPy)
#   5. pytest_rest.log pytest -m gpu over the rest of the suite (layers, models, training), then the
#                      gpu-and-slow tests (one tensor past 2^31 elements, half a billion channels)
#   6. bench_all.log   bench_train.py --device gpu (img/s and host reads per step, each a sync),
#                      then bench_ops.py --device all --quick --no-ref
#   7. summary.txt     one line per stage: exit status and seconds
# Environment: GPU_CHECK_BUDGET (seconds, default 420), SITE (default /tmp/site),
# GPU_CHECK_ARCHS (CMAKE_CUDA_ARCHITECTURES for the build, default native).
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
SITE=${SITE:-/tmp/site}
BUDGET=${GPU_CHECK_BUDGET:-420}
START=$SECONDS
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
PY=${PYTHON:-python3}

left() { echo $((BUDGET - (SECONDS - START))); }

# stage NAME MIN_SECONDS MAX_SECONDS LOG COMMAND...: run COMMAND under `timeout` (at most MAX_SECONDS
# and what is left of the budget) if at least MIN_SECONDS are left; record status and time.
stage() {
    local name=$1 min=$2 max=$3 log=$4
    shift 4
    local avail
    avail=$(left)
    if [ "$avail" -lt "$min" ]; then
        echo "$name: SKIPPED (only ${avail}s of the budget left, needs ${min}s)" | tee -a "$SUMMARY"
        return 0
    fi
    [ "$max" -gt "$avail" ] && max=$avail
    local t0=$SECONDS rc
    {
        echo "### $name: $*"
        echo "### time limit ${max}s, started at +$((SECONDS - START))s"
    } >>"$log"
    timeout --signal=INT --kill-after=15 "$max" "$@" >>"$log" 2>&1
    rc=$?
    local msg="$name: exit $rc in $((SECONDS - t0))s"
    [ "$rc" -eq 124 ] && msg="$msg (TIMED OUT at ${max}s)"
    echo "$msg" | tee -a "$SUMMARY"
    echo "### $msg" >>"$log"
    return 0
}

{
    echo "host: $(hostname), $(nproc) cores; $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
    echo "nvcc: $(nvcc --version 2>&1 | tail -1); python: $($PY --version 2>&1)"
    $PY -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
    echo "compute-sanitizer: $(command -v compute-sanitizer || echo missing)"
} | tee -a "$SUMMARY"

# 0. The driver, before anything is built: the CUDA runtime cnnkit links needs a driver of its major
# version (R580+ for CUDA 13); with an older one every launch fails.
need_major=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
drv_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
echo "driver supports CUDA ${drv_cuda:-?}; nvcc builds for CUDA ${need_major:-?}" | tee -a "$SUMMARY"
if [ -n "$need_major" ] && [ -n "$drv_cuda" ] && [ "$drv_cuda" -lt "$need_major" ]; then
    echo "the NVIDIA driver is too old for CUDA $need_major (R580+ for CUDA 13): stopping" | tee -a "$SUMMARY"
    exit 1
fi

# 1. Build (CNNKIT_CUDA=ON: a missing nvcc must fail loudly here, not skip the CUDA module), for this
# GPU only (a quarter of the default build's time) and with line information for compute-sanitizer.
stage build 60 240 "$OUT/build.log" \
    $PY -m pip install --no-build-isolation --no-deps --target "$SITE" -C cmake.define.CNNKIT_CUDA=ON \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="${GPU_CHECK_ARCHS:-native}" -C cmake.define.CMAKE_CUDA_FLAGS=-lineinfo .
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
if ! (cd /tmp && $PY -c "import cnnkit._cuda as c; print('cnnkit._cuda', c.build_info(), 'devices', c.device_count())") \
        >>"$OUT/build.log" 2>&1; then
    echo "cnnkit._cuda does not import: stopping (see build.log)" | tee -a "$SUMMARY"
    exit 1
fi
tail -1 "$OUT/build.log" | tee -a "$SUMMARY"

OPS_TESTS="tests/test_conv.py tests/test_pool.py tests/test_activation.py tests/test_norm.py tests/test_loss.py
tests/test_linear.py tests/test_backend.py tests/test_gpu.py tests/test_cuda_fallback.py"
PYTEST="$PY -m pytest -q -p no:cacheprovider -rfE"

# 2. The GPU half of every op test, the GPU-only tests, and the no-GPU fallbacks.
# shellcheck disable=SC2086
stage pytest_ops 60 200 "$OUT/pytest_ops.log" $PYTEST -m "gpu or not gpu" $OPS_TESTS

# 3. compute-sanitizer. --error-exitcode makes a finding a non-zero exit. memcheck runs the whole gpu
# suite but the slow tests, the deliberate faults and the spin-kernel stream tests (CNNKIT_TEST_CUPY_POOL=0:
# one cudaMalloc per array).
SAN="compute-sanitizer --error-exitcode 99 --print-limit 50"
MEMCHECK_K="not memory_fault and not launch_errors and not scratch_allocation and not stream"
# shellcheck disable=SC2086
stage memcheck 90 180 "$OUT/sanitizer.log" env CNNKIT_TEST_CUPY_POOL=0 $SAN --tool memcheck --leak-check no \
    $PYTEST -m "gpu and not slow" -k "$MEMCHECK_K" tests
RACE_K="(float32 or repeat or deterministic) and not finite"
# shellcheck disable=SC2086
stage racecheck 45 90 "$OUT/sanitizer.log" $SAN --tool racecheck --racecheck-report all \
    $PYTEST -m gpu -k "$RACE_K" -x tests/test_norm.py tests/test_loss.py tests/test_pool.py::test_global_pools_match_reference \
    tests/test_activation.py::test_rowwise_forward_and_backward tests/test_conv.py::test_bias_grad_is_deterministic_and_accurate \
    tests/test_conv.py::test_gpu_direct_weight_gradient_is_deterministic_and_accurate

# compute-sanitizer initcheck: no kernel reads device memory nothing wrote (the same reduced set
# as memcheck, minus the tests that hand the kernels uninitialized outputs on purpose).
# shellcheck disable=SC2086
stage initcheck 45 90 "$OUT/sanitizer.log" $SAN --tool initcheck \
    $PYTEST -m gpu -k "float32 and $MEMCHECK_K" -x tests/test_conv.py tests/test_pool.py tests/test_activation.py \
    tests/test_norm.py tests/test_loss.py tests/test_linear.py

# 4. The GPU benchmark (PyTorch/cuDNN peer in a child process, CUDA events, medians).
stage bench_gpu 60 120 "$OUT/bench_gpu.log" $PY benchmarks/bench_ops.py --device gpu

# 6. The rest of the suite's GPU tests (tests/test_hardening.py's GPU determinism check among them) (layers, models, training on CuPy arrays).
IGNORES=""
for f in $OPS_TESTS; do IGNORES="$IGNORES --ignore=$f"; done
# shellcheck disable=SC2086
stage pytest_rest 30 90 "$OUT/pytest_rest.log" $PYTEST -m "gpu and not slow" tests $IGNORES
stage pytest_slow 30 60 "$OUT/pytest_rest.log" $PYTEST -m "gpu and slow" tests

# 6. Training throughput on the GPU (the tutorial model against PyTorch), then the CPU rows beside the
# GPU ones (quick CPU batches; the NumPy reference is too slow for the budget).
stage bench_train 40 90 "$OUT/bench_all.log" $PY benchmarks/bench_train.py --device gpu --samples 12000 --repeat 2
stage bench_all 40 120 "$OUT/bench_all.log" $PY benchmarks/bench_ops.py --device all --quick --no-ref --repeat 5

echo "total: $((SECONDS - START))s of a ${BUDGET}s budget" | tee -a "$SUMMARY"
grep -h -E "passed|failed|error|ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$OUT"/pytest_*.log "$OUT"/sanitizer.log \
    2>/dev/null | tail -20 | tee -a "$SUMMARY"
