#!/usr/bin/env python
"""Run a list of benchmarks on one checkpoint and write one table.

Runs ssl_ext/tools/benchmark_suite.py, installed as ``ssl-ext-run benchmark-suite``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.benchmark_suite import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.benchmark_suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
