"""Is a training run finished? The one rule, used by the train engine, the SLURM launcher (which
must not requeue a finished run), sweeps and studies.

A run is finished when its run directory holds ``DONE`` (written atomically at the end of
training) recording the same plan (``NUM_EPOCHS``, ``MAX_ITERATIONS``) as the config being
launched, and ``AUTO_RESUME`` is on. A relaunch asking for *more* training continues from the
newest checkpoint; one asking for *less* than was done stops with a message and changes nothing.

A relaunch must also ask for the same *recipe* (``RECIPE_KEYS``) as the run's ``train_config.yaml``:
otherwise a finished run would be reported, or an unfinished one continued, under a config that did
not train it. It stops and lists the changed keys unless ``CHECKPOINT.ALLOW_RECIPE_CHANGE`` is set.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from ssl_ext.errors import UserError
from ssl_ext.utils.containers import flatten, plain
from ssl_ext.utils.io import path_manager, read_text

DONE_FILE = "DONE"
TRAIN_CONFIG_FILE = "train_config.yaml"
_ABSENT = object()
# What trains the weights. Not in it: the run's length (more epochs continue a run), where the images are
# read from and where their views are cut (same distribution), mixed precision, logging, hooks, machine
# and launcher.
RECIPE_KEYS = ("SEED_VALUE", "MODEL", "LOSS", "LOSS_SCHEDULES", "OPTIMIZER", "DATA.TRAIN")
NOT_RECIPE_KEYS = frozenset({
    "OPTIMIZER.NUM_EPOCHS", "OPTIMIZER.MAX_ITERATIONS", "MODEL.AMP",
    "DATA.TRAIN.DATA_PATHS", "DATA.TRAIN.AUGMENT_ON", "DATA.TRAIN.DECODE_MAX_SIZE",
})


def done_record(run_dir: str) -> Optional[Dict[str, Any]]:
    """The contents of ``<run_dir>/DONE``, or None when the run has not finished."""
    marker = os.path.join(run_dir, DONE_FILE)
    if path_manager.exists(marker):
        return json.loads(read_text(marker))
    return None


def planned_iterations(cfg: DictConfig) -> Dict[str, int]:
    """What a run is asked to do; DONE records it so a relaunch can tell more from the same."""
    return {"NUM_EPOCHS": int(cfg.config.OPTIMIZER.NUM_EPOCHS), "MAX_ITERATIONS": int(cfg.config.OPTIMIZER.MAX_ITERATIONS)}


def recipe_of(config: DictConfig) -> Dict[str, Any]:
    """``config``'s recipe keys as ``{dotted key: value}`` (lists are values)."""
    flat: Dict[str, Any] = {}
    for key in RECIPE_KEYS:
        node = OmegaConf.select(config, key, default=_ABSENT)
        if node is not _ABSENT:
            flat.update(flatten(plain(node), key))
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_RECIPE_KEYS)}


def recipe_changes(cfg: DictConfig) -> List[str]:
    """``"KEY: run's value -> this config's"`` for each recipe key that differs from the run directory's
    ``train_config.yaml`` (none when the directory has no run yet)."""
    saved_path = os.path.join(str(cfg.config.CHECKPOINT.DIR), TRAIN_CONFIG_FILE)
    if not path_manager.exists(saved_path):
        return []
    saved = OmegaConf.create(read_text(saved_path))
    before, now = recipe_of(saved.config), recipe_of(cfg.config)
    # A framework key the run's config lacks came with a later ssl_ext version, whose default keeps the old
    # behaviour; a plugin parameter (not in defaults.yaml) given on one side only is a change.
    framework = _framework_keys()
    absent = "<absent>"
    return [
        f"{key}: {before.get(key, absent)!r} -> {now.get(key, absent)!r}"
        for key in sorted(set(before) | set(now))
        if before.get(key, absent) != now.get(key, absent) and (key in before or key not in framework)
    ]


def _framework_keys() -> frozenset:
    from ssl_ext.config.paths import config_root

    defaults = OmegaConf.load(os.path.join(str(config_root()), "defaults.yaml"))
    return frozenset(recipe_of(defaults.config))


def check_same_recipe(cfg: DictConfig) -> None:
    """Raise ``UserError`` when ``cfg`` would resume (or report) a run trained with another recipe."""
    c = cfg.config
    if not c.CHECKPOINT.AUTO_RESUME or c.CHECKPOINT.get("ALLOW_RECIPE_CHANGE", False):
        return
    changes = recipe_changes(cfg)
    if changes:
        run_dir = str(c.CHECKPOINT.DIR)
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise UserError(
            f"Run {run_dir} was trained with a different recipe than this command asks for "
            f"({run_dir}/{TRAIN_CONFIG_FILE} -> now): {shown}. Nothing was changed. Use a new "
            "config.CHECKPOINT.DIR for the new recipe, or set config.CHECKPOINT.ALLOW_RECIPE_CHANGE=true "
            "to continue this run with it."
        )


def finished_run(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    """The DONE record when ``cfg``'s run has nothing left to do, else None.

    Raises ``UserError`` when the run finished with more training than ``cfg`` now asks for, or when
    the run directory holds a run trained with another recipe (``check_same_recipe``).
    """
    check_same_recipe(cfg)
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
