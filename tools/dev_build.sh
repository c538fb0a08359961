#!/usr/bin/env bash
# Build this checkout into its own site folder (incremental: scikit-build-core reuses build/<tag>).
# Usage: tools/dev_build.sh [SITE]   (default /tmp/cnnkit-site-$(basename $PWD)); then
#        PYTHONPATH=SITE python -m pytest
set -euo pipefail
site=${1:-/tmp/cnnkit-site-$(basename "$PWD")}
python3 -m pip install -q --no-build-isolation --no-deps --upgrade --target "$site" . 1>&2
echo "$site"
