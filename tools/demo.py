#!/usr/bin/env python
"""The main demo: pretraining vs its floors, then MSN vs PMSN on long-tailed Fashion-MNIST.

Runs ssl_ext/tools/demo.py, installed as ``ssl-ext-run demo``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.demo import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
