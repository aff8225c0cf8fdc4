#!/usr/bin/env bash
# The GPU check in one command, for a GPU machine without network (see benchmarks/gpu_check.py):
# install the carried wheels (benchmarks/prepare_gpu_wheels.sh) and ssl_ext itself (a regular,
# non-editable install) into a private folder, then run every check. Arguments go to gpu_check.py.
#
#   benchmarks/gpu_check.sh [--checks train,ddp,...] [--budget-s 450] ...
#
# Environment: OUT (results folder, default ./gpu_check_out), PYTHON (default python3),
# GPU_CHECK_WHEELS (default .gpu_wheels), GPU_CHECK_SITE (install folder, default /tmp/ssl_ext_site).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-./gpu_check_out}
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.gpu_wheels}
SITE=${GPU_CHECK_SITE:-/tmp/ssl_ext_site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

PIP=("$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  started=$(date +%s)
  # --no-deps: everything else is on the machine already; torch is never replaced.
  if "${PIP[@]}" "$WHEELS"/*.whl >"$OUT/install.log" 2>&1; then
    GPU_CHECK_INSTALL="installed $(ls "$WHEELS"/*.whl | wc -l) wheels"
  else
    GPU_CHECK_INSTALL="wheel install FAILED ($(tail -1 "$OUT/install.log"))"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # ssl_ext itself as a regular (non-editable) install, with the configs it ships; the checkout if that fails.
  if "${PIP[@]}" --no-build-isolation . >>"$OUT/install.log" 2>&1; then
    GPU_CHECK_INSTALL="$GPU_CHECK_INSTALL + ssl_ext into $SITE in $(( $(date +%s) - started )) s"
  else
    GPU_CHECK_INSTALL="$GPU_CHECK_INSTALL; ssl_ext install FAILED ($(tail -1 "$OUT/install.log")): running the checkout"
    export PYTHONPATH="$PYTHONPATH:$PWD"
  fi
  export GPU_CHECK_INSTALL
  echo "gpu_check.sh: $GPU_CHECK_INSTALL"
else
  echo "gpu_check.sh: no wheels in $WHEELS: using the Python environment as it is"
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
