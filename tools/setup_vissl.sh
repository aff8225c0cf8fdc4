#!/usr/bin/env bash
# VISSL 0.1.6, the reference client of ssl_ext.integrations.vissl, in an isolated folder
# (.cache/vissl by default, or $1) that is put first on PYTHONPATH to run VISSL; never into
# .venv, because VISSL's wheel bundles its own classy_vision and fairscale. With --no-deps:
# the venv already has VISSL's pure-Python dependencies (fvcore, iopath, hydra-core, ...);
# setuptools<81 is added because VISSL imports pkg_resources. Idempotent: a stamp holding
# the pinned requirements makes a second run return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-.cache/vissl}
PYTHON=${PYTHON:-.venv/bin/python}  # the interpreter that will run VISSL (same minor version as the install)
REQUIREMENTS="vissl==0.1.6 setuptools<81"
STAMP="$TARGET/.ssl_ext_stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQUIREMENTS" ]; then
  exit 0
fi
echo "[setup] installing $REQUIREMENTS into $TARGET (isolated, for the VISSL integration tests)"
rm -rf "$TARGET"
mkdir -p "$(dirname "$TARGET")"
# shellcheck disable=SC2086
"$PYTHON" -m pip install --quiet --no-deps --target "$TARGET" $REQUIREMENTS 2>&1 | grep -v "is ignored" || true
[ -f "$TARGET/vissl/__init__.py" ] && [ -f "$TARGET/pkg_resources/__init__.py" ] \
  || { echo "[setup] installing VISSL into $TARGET failed; see the pip output above" >&2; exit 1; }
echo "$REQUIREMENTS" > "$STAMP"
