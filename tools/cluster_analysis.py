#!/usr/bin/env python
"""Cluster analysis of a checkpoint: is its feature space split into equal-size clusters?

Runs ssl_ext/tools/cluster_analysis.py, installed as ``ssl-ext-run cluster-analysis``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.cluster_analysis import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.cluster_analysis import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
