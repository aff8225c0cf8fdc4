#!/usr/bin/env python
"""VISSL-style entry point: ``python tools/run_distributed_engines.py config=<yaml> [overrides]``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
