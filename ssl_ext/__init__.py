"""ssl_ext: self-supervised learning on long-tailed data, VISSL-style plugins.

The plugin API lives in the top-level ``registry`` package. Importing ``ssl_ext``
registers its losses in Classy Vision's loss registry too (``ssl_ext.losses``), so a
Classy Vision or VISSL trainer finds them by name once ``ssl_ext`` is imported.
"""
import warnings

# fvcore.nn (imported through Classy Vision and the FLOP counter) scripts a function at import time, and
# torch >= 2.9 warns on every process that torch.jit.script is deprecated; the warning is about fvcore,
# not about anything a user can change, and it buried ssl_ext's one-line errors. Filtered here, before any
# ssl_ext module imports fvcore, so every command and every spawned rank is quiet.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)", category=FutureWarning)

__version__ = "0.1.0"

# Registration in Classy Vision's loss registry is this import's side effect (after the filter above).
import ssl_ext.losses  # noqa: E402,F401
