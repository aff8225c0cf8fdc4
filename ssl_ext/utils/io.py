"""File I/O through iopath's PathManager, with atomic writes (temp file + rename)."""
from __future__ import annotations

import io
import os
import uuid
from typing import Any

from iopath.common.file_io import PathManager

path_manager = PathManager()


def _tmp_name(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _replace(src: str, dst: str) -> None:
    if "://" not in dst:
        os.replace(src, dst)  # atomic on POSIX; iopath's mv refuses to overwrite
        return
    if path_manager.exists(dst):
        path_manager.rm(dst)
    if not path_manager.mv(src, dst):
        raise OSError(f"Could not move {src} to {dst}")


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    parent = os.path.dirname(path)
    if parent:
        path_manager.mkdirs(parent)
    tmp = _tmp_name(path)
    try:
        with path_manager.open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(f, "fileno"):
                os.fsync(f.fileno())
        _replace(tmp, path)
    except OSError as exc:
        from ssl_ext.errors import DiskFullError, is_disk_full

        if is_disk_full(exc):
            raise DiskFullError(path, len(data)) from exc
        raise
    finally:
        if path_manager.exists(tmp):
            path_manager.rm(tmp)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def torch_load(path: str, weights_only: bool = True) -> Any:
    import torch

    with path_manager.open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=weights_only)


def read_text(path: str) -> str:
    with path_manager.open(path, "r") as f:
        return f.read()


def append_line(path: str, line: str) -> None:
    with path_manager.open(path, "a") as f:
        f.write(line.rstrip("\n") + "\n")
