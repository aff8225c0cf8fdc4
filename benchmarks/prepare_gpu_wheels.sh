#!/usr/bin/env bash
# Fill .gpu_wheels/ (gitignored) with the wheels that benchmarks/gpu_check.sh installs on a GPU
# machine without network: Python 3.12, manylinux x86-64, torch/torchvision/numpy/scipy/
# scikit-learn/matplotlib/tensorboard already there. Only what that machine lacks is carried:
# ssl_ext's own dependencies (fvcore, iopath, classy-vision, submitit, hydra-core, omegaconf,
# antlr4, faiss-cpu, kornia and their small needs) and lightly
# (the loss-speed reference). timm and the scientific stack are on the machine (KINDS.md lists them).
# faiss-gpu is far too large to carry: the GPU kNN check uses faiss-cpu and a torch search.
#
#   benchmarks/prepare_gpu_wheels.sh [FOLDER]       # default .gpu_wheels; needs PyPI
#
# Versions are those of this checkout's .venv (the set the CPU tests pass with), so the GPU run
# checks the same code. Packages published only as source (fvcore, iopath 0.1.10, antlr4 4.9.3)
# are pure Python: they are built into py3-none-any wheels here. The folder must stay well
# under the 64 MiB that travels with a device run (the working tree counts too); the script
# fails above MAX_MIB (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER=${1:-.gpu_wheels}
MAX_MIB=${MAX_MIB:-60}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

# name==version from the venv, or the fallback given (a package the venv does not have).
pinned() {
  local name=$1 fallback=${2:-}
  local version
  version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
  version=${version:-$fallback}
  if [ -n "$version" ]; then echo "$name==$version"; else echo "$name"; fi
}

# Wheels on PyPI (pure Python, or manylinux for faiss-cpu).
BINARY="$(pinned classy-vision) $(pinned submitit) $(pinned hydra-core) $(pinned omegaconf) $(pinned faiss-cpu)
        $(pinned yacs) $(pinned termcolor) $(pinned tabulate) $(pinned portalocker) $(pinned kornia) $(pinned kornia_rs)
        $(pinned lightly 1.6.0)"
# Source-only on PyPI, pure Python: built here.
SOURCE_ONLY="$(pinned fvcore) $(pinned iopath) $(pinned antlr4-python3-runtime 4.9.3)"

rm -rf "$FOLDER"
mkdir -p "$FOLDER"
echo "[wheels] downloading: $BINARY" | tr -s ' \n' ' '; echo
# shellcheck disable=SC2086
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$FOLDER" $BINARY 2>&1 | grep -v "is ignored" || true
echo "[wheels] building pure-Python wheels: $SOURCE_ONLY"
# shellcheck disable=SC2086
"$PYTHON" -m pip wheel --quiet --no-deps -w "$FOLDER" $SOURCE_ONLY 2>&1 | grep -v "is ignored" || true

expected=$(echo $BINARY $SOURCE_ONLY | wc -w)
found=$(find "$FOLDER" -maxdepth 1 -name '*.whl' | wc -l)
if [ "$found" -ne "$expected" ]; then
  echo "[wheels] expected $expected wheels, found $found in $FOLDER: see the pip messages above" >&2
  exit 1
fi
bad=$(find "$FOLDER" -maxdepth 1 -name '*.whl' ! -name '*-none-any.whl' ! -name '*manylinux*x86_64*.whl' -printf '%f ')
if [ -n "$bad" ]; then
  echo "[wheels] not installable on Python 3.12 / x86-64 manylinux: $bad" >&2
  exit 1
fi
bytes=$(du -cb "$FOLDER"/*.whl | tail -1 | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
ls -1 "$FOLDER"
echo "[wheels] $found wheels, $mib MiB in $FOLDER (limit $MAX_MIB MiB)"
if [ "$mib" -gt "$MAX_MIB" ]; then
  echo "[wheels] $FOLDER is over $MAX_MIB MiB: it would not travel with the working tree" >&2
  exit 1
fi
# What else travels with a device run: tracked files plus untracked files that git does not ignore.
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$(( (tree + bytes) / 1048576 ))
echo "[wheels] working tree + wheels: about $total MiB of the 64 MiB a device run carries"
[ "$total" -lt 64 ] || echo "[wheels] WARNING: over 64 MiB: remove untracked files or carry fewer wheels" >&2
echo "[wheels] device run: carry [\"$FOLDER\"] and run: benchmarks/gpu_check.sh"
