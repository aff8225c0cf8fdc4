#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup_env.sh --test
exec .venv/bin/python -m pytest tests -p no:cacheprovider --timeout=900 "$@"
