#!/usr/bin/env python
"""ImageNet-1k (or any ImageFolder-style dataset) -> VISSL filelists.

Runs ssl_ext/tools/prepare_imagenet.py, installed as ``ssl-ext-run prepare-imagenet``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_imagenet import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_imagenet import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
