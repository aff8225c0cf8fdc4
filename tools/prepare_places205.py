#!/usr/bin/env python
"""Places205 list files -> VISSL filelists.

Runs ssl_ext/tools/prepare_places205.py, installed as ``ssl-ext-run prepare-places205``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_places205 import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_places205 import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
