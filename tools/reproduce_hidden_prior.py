#!/usr/bin/env python
"""Reproduce the hidden-uniform-prior findings (Assran et al., ICLR 2023, arXiv:2210.07277) end to end.

Runs ssl_ext/tools/reproduce_hidden_prior.py, installed as ``ssl-ext-run reproduce-hidden-prior``; see its ``--help``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssl_ext.tools.reproduce_hidden_prior import *  # noqa: E402,F401,F403  (scripts and tests use the module's names)
from ssl_ext.tools.reproduce_hidden_prior import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
