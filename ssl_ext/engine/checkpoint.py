"""Checkpoints: atomic writes through iopath, keep-last-N, and auto-resume from the newest readable one."""
from __future__ import annotations

import logging
import os
import random
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ssl_ext.utils.io import atomic_torch_save, path_manager, torch_load

logger = logging.getLogger(__name__)
CHECKPOINT_SUBDIR = "checkpoints"
_NAME = re.compile(r"^model_iteration(\d+)\.torch$")


class CheckpointError(RuntimeError):
    pass


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINT_SUBDIR)


def checkpoint_path(run_dir: str, iteration: int) -> str:
    return os.path.join(checkpoint_dir(run_dir), f"model_iteration{iteration:08d}.torch")


def list_checkpoints(run_dir: str) -> List[Tuple[int, str]]:
    """(iteration, path) of the checkpoints in ``run_dir``, newest first."""
    folder = checkpoint_dir(run_dir)
    if not path_manager.exists(folder):
        return []
    found = []
    for name in path_manager.ls(folder):
        match = _NAME.match(os.path.basename(name))
        if match:
            found.append((int(match.group(1)), os.path.join(folder, os.path.basename(name))))
    return sorted(found, reverse=True)


def rng_state() -> Dict[str, Any]:
    """RNG states as tensors/ints/tuples only, so the checkpoint loads with ``weights_only=True``."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str, iteration: int, state: Dict[str, Any], keep_last: int) -> str:
    """Write atomically, then delete all but the newest ``keep_last`` (0 keeps all)."""
    path = checkpoint_path(run_dir, iteration)
    atomic_torch_save(state, path)
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[keep_last:]:
            path_manager.rm(old)
    return path


def load_newest_checkpoint(run_dir: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """Load the newest readable checkpoint; a corrupt newer one is reported and skipped (never deleted)."""
    for iteration, path in list_checkpoints(run_dir):
        try:
            state = torch_load(path, weights_only=True)
            if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
                raise CheckpointError("not an ssl_ext training checkpoint (no 'model'/'iteration' keys)")
        except Exception as exc:  # a truncated zip, a pickle error, a half-copied file, ...
            logger.warning(
                "Checkpoint %s (iteration %d) is unreadable (%s: %s); trying the previous one. "
                "Delete or move it once you have checked it.", path, iteration, type(exc).__name__, exc,
            )
            continue
        return path, state
    return None
