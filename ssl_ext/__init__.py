"""ssl_ext: self-supervised learning on long-tailed data, VISSL-style plugins.

The plugin API lives in the top-level ``registry`` package. Importing ``ssl_ext``
registers its losses in Classy Vision's loss registry too (``ssl_ext.losses``), so a
Classy Vision or VISSL trainer finds them by name once ``ssl_ext`` is imported.
"""
__version__ = "0.1.0"

import ssl_ext.losses  # noqa: E402,F401  (registration is the import's side effect)
