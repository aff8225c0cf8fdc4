#!/usr/bin/env python
"""CLEVR scene JSON -> VISSL filelists for the VTAB tasks CLEVR/Count and CLEVR/Dist.

Runs ssl_ext/tools/prepare_clevr.py, installed as ``ssl-ext-run prepare-clevr``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_clevr import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_clevr import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
