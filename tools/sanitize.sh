#!/usr/bin/env bash
# Build the C++ kernels with AddressSanitizer + UndefinedBehaviorSanitizer into their own site folder
# and run the test suite against that build.
# Usage: [PYTHON=...] [BUILD_PYTHON=...] tools/sanitize.sh [SITE] [pytest arguments...]
#        (default SITE /tmp/cnnkit-site-sanitize; PYTHON runs the tests, BUILD_PYTHON builds)
#
# CPython itself is not instrumented, so the ASan runtime must be loaded before anything else
# (LD_PRELOAD, with libstdc++; the UBSan runtime comes with _core as a dependency). detect_leaks=0: CPython
# keeps interned objects and arenas alive at exit, which LeakSanitizer would report as leaks.
# Any ASan report or UBSan finding aborts the run (halt_on_error, -fno-sanitize-recover=undefined).
# allocator_may_return_null=1: the out-of-memory tests ask for terabytes on purpose and expect
# operator new to throw std::bad_alloc (MemoryError in Python); by default ASan aborts on any request
# over its 1 TiB limit ("allocation-size-too-big") instead of failing it.
set -euo pipefail
cd "$(dirname "$0")/.."
site=${1:-/tmp/cnnkit-site-sanitize}
shift || true
python=${PYTHON:-python3}              # runs the tests
build_python=${BUILD_PYTHON:-$python}  # builds (needs scikit-build-core and pybind11 without isolation)
sanitizers=${CNNKIT_SANITIZE:-address,undefined}

"$build_python" -m pip install -q --no-build-isolation --no-deps --upgrade --target "$site" \
    -Ccmake.define.CNNKIT_SANITIZE="$sanitizers" -Ccmake.define.CNNKIT_CUDA=OFF \
    -Ccmake.build-type=RelWithDebInfo -Cbuild-dir=build/sanitize . 1>&2

asan_rt=$(${CXX:-g++} -print-file-name=libasan.so)
cxx_rt=$(${CXX:-g++} -print-file-name=libstdc++.so)
[ -f "$asan_rt" ] || { echo "sanitize.sh: no ASan runtime found ($asan_rt)" >&2; exit 2; }
# libstdc++ too: ASan intercepts __cxa_throw and looks the real one up when it starts; CPython does
# not link libstdc++, so without it the first C++ exception (every ValueError our bindings raise)
# would call a null pointer and abort.
export LD_PRELOAD="$asan_rt:$cxx_rt${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# abort_on_error for UBSan too: its default is exit(1), which leaves no Python traceback.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
# The build this run tests: the sanitizers must be in it.
"$python" -c "import cnnkit._core as c, sys; f = c.__file__; print('sanitized build:', f); \
    sys.exit(0 if b'__asan_init' in open(f, 'rb').read() else 'not an ASan build: ' + f)"
# --capture=sys: pytest captures Python's sys.stdout/stderr but leaves file descriptor 2 alone, so a
# sanitizer report (written to fd 2 just before the process aborts) reaches the terminal; with the
# default fd capture it went into pytest's temporary file and was lost with the process.
exec "$python" -X faulthandler -m pytest -p no:cacheprovider --capture=sys "$@"
