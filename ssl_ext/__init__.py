"""ssl_ext: self-supervised learning on long-tailed data, VISSL-style plugins.

The plugin API lives in the top-level ``registry`` package.
"""
__version__ = "0.1.0"
