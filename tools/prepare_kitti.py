#!/usr/bin/env python
"""KITTI object labels -> VISSL filelists for VTAB's KITTI/Dist (closest vehicle distance).

Runs ssl_ext/tools/prepare_kitti.py, installed as ``ssl-ext-run prepare-kitti``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_kitti import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_kitti import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
