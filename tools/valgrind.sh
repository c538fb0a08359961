#!/usr/bin/env bash
# Run a reduced op suite under valgrind's memcheck: every kernel family forward and backward on small
# odd shapes, through cnnkit.ops and against ops.reference (tools/valgrind_ops.py). Any invalid read
# or write, use of uninitialized memory in a branch, or bad free makes the exit status non-zero.
# Usage: tools/valgrind.sh [SITE]   (a site built by tools/dev_build.sh; default: the imported cnnkit)
# OpenMP runs with 2 threads and OpenBLAS with 1 (valgrind serializes threads anyway); CPython's own
# allocator is switched to malloc so that valgrind sees every block.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ $# -ge 1 ] && export PYTHONPATH="$1${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
exec valgrind --tool=memcheck --error-exitcode=1 --errors-for-leak-kinds=none --leak-check=no \
    --track-origins=yes --suppressions=tools/valgrind-python.supp --num-callers=30 \
    "$python" tools/valgrind_ops.py
