#!/usr/bin/env python
"""CIFAR-100 python pickles -> PNG files + VISSL filelists.

Runs ssl_ext/tools/prepare_cifar100.py, installed as ``ssl-ext-run prepare-cifar100``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.prepare_cifar100 import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.prepare_cifar100 import command, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(command())
