"""Errors a user can act on.

A :class:`UserError` is a problem with the input or the environment (a config value, a data path,
a run directory in use, unreadable checkpoints, a full disk), not a bug in ssl_ext: the command
line prints its message alone (no traceback unless ``--debug`` or ``SSL_EXT_DEBUG=1``) and exits
with code 2. Its message names the file, key or value and says what to do.
"""
from __future__ import annotations

import errno
import os
import shutil


class UserError(Exception):
    """A problem the user can fix; the message names the file/key/value and the fix."""


class RunStopped(UserError):
    """A run stopped on purpose with an explanation (e.g. a non-finite loss); exit code 1."""

    exit_code = 1


class DiskFullError(UserError, OSError):
    """Writing ``path`` failed for lack of space; earlier files are untouched (writes are atomic)."""

    def __init__(self, path: str, needed: int, what_to_do: str = ""):
        folder = os.path.dirname(os.path.abspath(path))
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = -1
        self.path, self.needed, self.free = path, needed, free
        super().__init__(
            f"No space left on the device of {folder} to write {os.path.basename(path)}: it needs {needed:,} bytes "
            f"and {free:,} bytes are free. The files already there are intact. Free some space "
            f"(or move older files away){', ' + what_to_do if what_to_do else ''}, then relaunch the same command."
        )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
