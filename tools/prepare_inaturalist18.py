#!/usr/bin/env python
"""iNaturalist 2018 (train2018.json / val2018.json, COCO-style) -> VISSL filelists.

Runs ssl_ext/tools/prepare_inaturalist18.py, installed as ``ssl-ext-run prepare-inaturalist18``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_inaturalist18 import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_inaturalist18 import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
