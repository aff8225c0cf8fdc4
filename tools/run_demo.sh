#!/usr/bin/env bash
# Set up (idempotent) and run the main demo: pretraining vs its floors, then MSN vs PMSN on long-tailed
# Fashion-MNIST. As root with apt it installs Debian's dataset-fashion-mnist first; otherwise (or when that
# fails) the demo says so and falls back to scikit-learn's digits. Arguments go to tools/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup_env.sh
if [ ! -e /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[demo] apt-get install dataset-fashion-mnist"
  ( export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null && \
    apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null ) \
    || echo "[demo] could not install dataset-fashion-mnist; the demo will fall back to digits"
fi
export OMP_NUM_THREADS=1
exec .venv/bin/python tools/demo.py "$@"
