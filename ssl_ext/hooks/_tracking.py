"""What the experiment-tracker hooks (W&B, MLflow) share: which scalars, which config, which plots.

Each tracker receives exactly the records that ``metrics.jsonl`` receives
(``task.log_metrics`` -> ``hook.write_metrics``), the composed run config and, at
the end, the PNG plots that the other hooks left in the run directory. A tracker
run is tied to its run directory through a small id file, so a relaunch that
resumes the training also continues the same tracker run.
"""
from __future__ import annotations

import glob
import importlib.util
import os
from numbers import Number
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from ssl_ext.utils.io import atomic_write_text, path_manager, read_text

STEP_KEY = "iteration"


def require_package(module: str, extra: str, switch: str) -> None:
    """Fail at build time, with the install command, when an optional tracker package is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"{switch}=true needs the {module!r} package: pip install 'ssl_ext[{extra}]' (or set {switch}=false)"
        )


def scalars(record: Dict[str, Any]) -> Tuple[int, Dict[str, float]]:
    """``(step, {name: value})`` of one metrics record: every numeric entry but the step itself."""
    values = {
        key: float(value)
        for key, value in record.items()
        if key != STEP_KEY and isinstance(value, Number) and not isinstance(value, bool)
    }
    return int(record[STEP_KEY]), values


def config_dict(task) -> Dict[str, Any]:
    """The composed run config (what ``train_config.yaml`` holds) as plain nested containers."""
    return OmegaConf.to_container(task.cfg, resolve=True)


def config_yaml(task) -> str:
    return OmegaConf.to_yaml(task.cfg, resolve=True)


def run_plots(run_dir: str) -> List[str]:
    """PNG plots written into the run directory by the other hooks (training curves, prior monitor, ...)."""
    return sorted(glob.glob(os.path.join(glob.escape(run_dir), "*.png")))


def saved_run_id(run_dir: str, filename: str) -> Optional[str]:
    path = os.path.join(run_dir, filename)
    if not path_manager.exists(path):
        return None
    return read_text(path).strip() or None


def save_run_id(run_dir: str, filename: str, run_id: str) -> None:
    path_manager.mkdirs(run_dir)
    atomic_write_text(os.path.join(run_dir, filename), run_id + "\n")


def default_run_name(task, configured: str) -> str:
    return configured or os.path.basename(os.path.normpath(task.run_dir))
