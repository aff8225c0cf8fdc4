#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with ssl_ext and its dependencies, and
# (with `--test`, when root with apt) the Debian packages the tests use. A second run only
# checks stamps and returns in about a second.
#
#   tools/setup_env.sh          # Python side only (the demo)
#   tools/setup_env.sh --test   # plus test tools, Fashion-MNIST and a SLURM cluster's packages
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV="$REPO/.venv"
PYTHON=${PYTHON:-python3}
WANT_TEST=0
[ "${1:-}" = "--test" ] && WANT_TEST=1

APT_PACKAGES="dataset-fashion-mnist slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

extras="cpu"
# The tests also cover the optional experiment trackers.
[ "$WANT_TEST" = 1 ] && extras="cpu,dev,wandb,mlflow"
stamp="$VENV/.ssl_ext_installed_${extras//,/_}"
fingerprint=$(cat setup.py | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  echo "[setup] installing ssl_ext[$extras] and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install --quiet -e ".[${extras}]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import ssl_ext, registry, torch, torchvision, faiss, classy_vision, submitit, hydra" \
    || { echo "[setup] the Python install failed; see the pip output above" >&2; exit 1; }
  echo "$fingerprint" > "$stamp"
fi

if [ "$WANT_TEST" = 1 ]; then
  # lightly is the loss tests' numerical reference only: --no-deps keeps its pinned requirements
  # (and any torch it would pull) out of the environment; `import lightly.loss` needs only torch/torchvision.
  LIGHTLY_VERSION=1.6.0
  if [ "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('lightly'))" 2>/dev/null)" != "$LIGHTLY_VERSION" ]; then
    echo "[setup] installing lightly==$LIGHTLY_VERSION (test-only, --no-deps)"
    "$VENV/bin/python" -m pip install --quiet --no-deps "lightly==$LIGHTLY_VERSION" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import lightly.loss" \
      || { echo "[setup] lightly==$LIGHTLY_VERSION does not import; see the pip output above" >&2; exit 1; }
  fi
  tools/setup_vissl.sh  # VISSL 0.1.6 for the integration tests, isolated in .cache/vissl (not in .venv)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $APT_PACKAGES; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
      echo "[setup] apt-get install$missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
  else
    echo "[setup] not root or no apt: Fashion-MNIST and SLURM tests will be skipped (they say why)."
  fi
fi
