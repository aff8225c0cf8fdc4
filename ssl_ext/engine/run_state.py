"""Is a training run finished? The one rule, used by the train engine, the SLURM launcher (which
must not requeue a finished run), sweeps and studies.

A run is finished when its run directory holds ``DONE`` (written atomically at the end of
training) recording the same plan (``NUM_EPOCHS``, ``MAX_ITERATIONS``) as the config being
launched, and ``AUTO_RESUME`` is on. A relaunch asking for *more* training continues from the
newest checkpoint; one asking for *less* than was done stops with a message and changes nothing.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from omegaconf import DictConfig

from ssl_ext.errors import UserError
from ssl_ext.utils.io import path_manager, read_text

DONE_FILE = "DONE"


def done_record(run_dir: str) -> Optional[Dict[str, Any]]:
    """The contents of ``<run_dir>/DONE``, or None when the run has not finished."""
    marker = os.path.join(run_dir, DONE_FILE)
    if path_manager.exists(marker):
        return json.loads(read_text(marker))
    return None


def planned_iterations(cfg: DictConfig) -> Dict[str, int]:
    """What a run is asked to do; DONE records it so a relaunch can tell more from the same."""
    return {"NUM_EPOCHS": int(cfg.config.OPTIMIZER.NUM_EPOCHS), "MAX_ITERATIONS": int(cfg.config.OPTIMIZER.MAX_ITERATIONS)}


def finished_run(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    """The DONE record when ``cfg``'s run has nothing left to do, else None.

    Raises ``UserError`` when the run finished with more training than ``cfg`` now asks for.
    """
    c = cfg.config
    run_dir = str(c.CHECKPOINT.DIR)
    done = done_record(run_dir)
    if done is None or not c.CHECKPOINT.AUTO_RESUME:
        return None
    if done.get("planned") == planned_iterations(cfg):
        return done
    asked = planned_iterations(cfg)
    epochs_done, iterations_done = int(done.get("epoch", 0)), int(done.get("iteration", 0))
    fewer = asked["NUM_EPOCHS"] < epochs_done or 0 < asked["MAX_ITERATIONS"] < iterations_done
    if fewer:
        raise UserError(
            f"Run {run_dir} has already finished {epochs_done} epochs ({iterations_done} iterations; see {run_dir}/DONE), "
            f"more than this command asks for (config.OPTIMIZER.NUM_EPOCHS={asked['NUM_EPOCHS']}, "
            f"MAX_ITERATIONS={asked['MAX_ITERATIONS']}). Nothing was changed. Raise NUM_EPOCHS to train further, "
            "or use a new config.CHECKPOINT.DIR for a shorter run."
        )
    return None
