#!/usr/bin/env bash
# Set up (idempotent) and run the main demo: MSN vs PMSN on long-tailed digits. Arguments go to tools/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
