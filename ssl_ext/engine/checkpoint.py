"""Checkpoints: atomic writes through iopath, keep-last-N rotation that never trades a readable
checkpoint for an unreadable one, finiteness checked before anything is written, and auto-resume
from the newest readable checkpoint (none readable: stop and say why, never restart silently)."""
from __future__ import annotations

import logging
import os
import random
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ssl_ext.engine.checkpoint_keys import STUDENT
from ssl_ext.errors import UserError
from ssl_ext.utils.io import atomic_torch_save, path_manager, torch_load

logger = logging.getLogger(__name__)
CHECKPOINT_SUBDIR = "checkpoints"
UNREADABLE_SUBDIR = "unreadable"
_NAME = re.compile(r"^model_iteration(\d+)\.torch$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be used (unreadable, foreign, or made for another config)."""


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


def nonfinite_tensors(state: Any, prefix: str = "") -> List[str]:
    """Dotted names of the floating-point tensors in ``state`` holding a NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [name for key, value in state.items() for name in nonfinite_tensors(value, f"{prefix}.{key}".lstrip("."))]
    if isinstance(state, (list, tuple)):
        return [name for i, value in enumerate(state) for name in nonfinite_tensors(value, f"{prefix}[{i}]")]
    return []


def save_checkpoint(run_dir: str, iteration: int, state: Dict[str, Any], keep_last: int, known_readable: set) -> str:
    """Write atomically, then rotate: keep the newest ``keep_last`` (0 keeps all) checkpoints.

    Only checkpoints known to be readable (written by this process, or the one the run resumed
    from) count toward ``keep_last``, and a file is deleted only when ``keep_last`` known-readable
    checkpoints newer than it exist, so an unreadable or foreign newer file can never cause a good
    one to be deleted. Files in ``unreadable/`` and files not named like checkpoints are never touched.
    """
    path = checkpoint_path(run_dir, iteration)
    atomic_torch_save(state, path)
    known_readable.add(path)
    if keep_last > 0:
        good_newer = 0
        for _, candidate in list_checkpoints(run_dir):
            if good_newer >= keep_last:
                path_manager.rm(candidate)
                known_readable.discard(candidate)
            elif candidate in known_readable:
                good_newer += 1
    return path


def read_checkpoint(path: str) -> Dict[str, Any]:
    """A training checkpoint's state; ``CheckpointError`` saying why when it cannot be used."""
    try:
        state = torch_load(path, weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle error, a half-copied file, ...
        first_sentence = str(exc).splitlines()[0].split(". ")[0] if str(exc) else ""
        raise CheckpointError(f"{type(exc).__name__}: {first_sentence}") from exc
    if not isinstance(state, dict) or STUDENT not in state or "iteration" not in state:
        raise CheckpointError("not an ssl_ext training checkpoint (no 'model'/'iteration' keys)")
    return state


def load_newest_checkpoint(run_dir: str, on_unreadable: str = "stop") -> Optional[Tuple[str, Dict[str, Any]]]:
    """Load the newest readable checkpoint of ``run_dir``; None when the run has none yet.

    A corrupt newer checkpoint is reported and skipped (never deleted). When checkpoints exist but
    none is readable, ``on_unreadable="stop"`` raises ``CheckpointError`` listing every file and
    why; ``"start_over"`` moves them into ``checkpoints/unreadable/`` and returns None.
    """
    problems = []
    for iteration, path in list_checkpoints(run_dir):
        try:
            state = read_checkpoint(path)
        except CheckpointError as exc:
            logger.warning("Checkpoint %s (iteration %d) is unreadable (%s); trying the previous one.", path, iteration, exc)
            problems.append((path, str(exc)))
            continue
        return path, state
    if not problems:
        return None
    if on_unreadable == "start_over":
        aside = os.path.join(checkpoint_dir(run_dir), UNREADABLE_SUBDIR)
        path_manager.mkdirs(aside)
        for path, _ in problems:
            os.replace(path, os.path.join(aside, os.path.basename(path)))
        logger.warning(
            "No checkpoint of %s is readable; config.CHECKPOINT.ON_UNREADABLE=start_over: moved the %d files to %s and "
            "training starts from iteration 0.", run_dir, len(problems), aside,
        )
        return None
    listing = "\n".join(f"  {path}: {why}" for path, why in problems)
    raise CheckpointError(
        f"None of the {len(problems)} checkpoints of run {run_dir} is readable:\n{listing}\n"
        "The run was not restarted. Restore a good checkpoint into that folder, or start this run over from "
        "iteration 0 with config.CHECKPOINT.ON_UNREADABLE=start_over (the unreadable files are moved to "
        f"{os.path.join(checkpoint_dir(run_dir), UNREADABLE_SUBDIR)}), or use a new config.CHECKPOINT.DIR."
    )
