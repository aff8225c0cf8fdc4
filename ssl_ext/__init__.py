"""ssl_ext: self-supervised learning on long-tailed data, VISSL-style plugins.

The plugin API lives in the top-level ``registry`` package.
"""
import warnings

# fvcore.nn (imported through Classy Vision and the FLOP counter) scripts a function at import time, and
# torch >= 2.9 warns on every process that torch.jit.script is deprecated; the warning is about fvcore,
# not about anything a user can change, and it buried ssl_ext's one-line errors. Filtered here, before any
# ssl_ext module imports fvcore, so every command and every spawned rank is quiet.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)", category=FutureWarning)

__version__ = "0.1.0"
