"""Hyper-parameter sweeps: every combination is one run, submitted together as one SLURM job array.

Two ways to ask for a sweep, which combine (the runs are the cartesian product):

* comma-separated override values, in hydra's sweep syntax (so ``range(1,4)``
  and ``choice(a,b)`` work too; lists in brackets and quoted strings are not
  split): ``config.OPTIMIZER.BASE_LR=0.1,0.3``;
* ``sweep=<yaml>`` (a path, absolute or relative to the working directory or to
  configs_yaml), a file of the form::

      # One run per combination of the listed values.
      sweep:
        config.OPTIMIZER.BASE_LR: [0.1, 0.3]
        config.LOSS.PARAMS.temperature: [0.1, 0.2]

Each run gets its own directory ``<CHECKPOINT.DIR>/<key>=<value>,...`` (the last
component of each swept key, unless two keys share it), so runs resume and skip
independently: a combination that already finished (its ``DONE`` records the
same plan) is not submitted again.
A summary of job ids, run dirs and log files is printed and written to
``<CHECKPOINT.DIR>/sweep_<array job id>.json``. Without ``SLURM.USE_SLURM`` the
runs execute here, one after another.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import yaml
from omegaconf import DictConfig

from ssl_ext.config import ConfigError, compose_config

SWEEP_FILE_PREFIX = "sweep="


@dataclass
class SweepRun:
    """One combination: its overrides (key, value string), run dir and composed config."""

    choices: List[Tuple[str, str]]
    run_dir: str
    cfg: DictConfig

    @property
    def overrides(self) -> List[str]:
        return [f"{key}={value}" for key, value in self.choices]


def override_value(value: Any) -> str:
    """A YAML value as the right-hand side of a hydra override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if re.fullmatch(r"[\w.:/+-]+", value) else json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def load_sweep_file(value: str) -> List[Tuple[str, List[str]]]:
    from ssl_ext.config.paths import resolve_yaml

    path = resolve_yaml(value, what="sweep")
    with open(path) as f:
        content = yaml.safe_load(f) or {}
    axes = content.get("sweep") if isinstance(content, dict) else None
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(
            f"{path}: a sweep file needs a non-empty 'sweep:' mapping of override keys to lists of values, "
            f"e.g. 'sweep: {{config.OPTIMIZER.BASE_LR: [0.1, 0.3]}}'."
        )
    parsed = []
    for key, values in axes.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{path}: sweep key {key!r} has an empty list of values.")
        parsed.append((str(key), [override_value(v) for v in values]))
    return parsed


def split_sweep(overrides: Sequence[str]) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    """(overrides shared by every run, [(swept key, [value strings])])."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    base, axes = [], []
    parser = OverridesParser.create()
    for item in overrides:
        if item.startswith(SWEEP_FILE_PREFIX):
            axes += load_sweep_file(item[len(SWEEP_FILE_PREFIX):])
            continue
        if item.startswith("config=") or "=" not in item:
            base.append(item)
            continue
        try:
            parsed = parser.parse_overrides([item])[0]
        except HydraException as exc:
            raise ConfigError(f"Override {item!r} cannot be parsed: {exc}") from None
        if parsed.is_sweep_override():
            axes.append((parsed.get_key_element(), list(parsed.sweep_string_iterator())))
        else:
            base.append(item)
    keys = [key for key, _ in axes]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ConfigError(f"Sweep key(s) {duplicated} are given more than once (command line and/or sweep file).")
    return base, axes


def short_names(keys: Sequence[str]) -> Dict[str, str]:
    """The last component of each key, or the whole key where two keys would share it."""
    last = {key: key.lstrip("+~").split(".")[-1] for key in keys}
    return {key: name if list(last.values()).count(name) == 1 else key.lstrip("+~") for key, name in last.items()}


def run_name(choices: Sequence[Tuple[str, str]], names: Dict[str, str]) -> str:
    return ",".join(f"{names[key]}={value}".replace("/", "_") for key, value in choices)


def expand(overrides: Sequence[str]) -> List[SweepRun]:
    """Compose one config per combination, each with its own CHECKPOINT.DIR."""
    from ssl_ext.launch.slurm import absolute_run_dir

    base, axes = split_sweep(overrides)
    names = short_names([key for key, _ in axes])
    sweeps_dir = any(key.lstrip("+~") == "config.CHECKPOINT.DIR" for key, _ in axes)
    runs = []
    for values in itertools.product(*[values for _, values in axes]):
        choices = list(zip([key for key, _ in axes], values))
        cfg = compose_config(base + [f"{key}={value}" for key, value in choices])
        run_dir = absolute_run_dir(cfg)
        if axes and not sweeps_dir:
            run_dir = os.path.join(run_dir, run_name(choices, names))
        cfg.config.CHECKPOINT.DIR = run_dir
        runs.append(SweepRun(choices, run_dir, cfg))
    dirs = [run.run_dir for run in runs]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"Two sweep combinations would share a run directory: {dirs}.")
    return runs


def common_sbatch_parameters(runs: Sequence[SweepRun]) -> Dict[str, Any]:
    """A job array has one set of resources: every combination must ask for the same."""
    from ssl_ext.launch.slurm import sbatch_parameters

    first = sbatch_parameters(runs[0].cfg)
    for run in runs[1:]:
        other = sbatch_parameters(run.cfg)
        if other != first:
            changed = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            raise ConfigError(
                f"Sweep combinations {runs[0].overrides} and {run.overrides} ask for different SLURM resources "
                f"({', '.join(changed)}); one job array has one set of resources: sweep those keys in separate launches."
            )
    return first


def print_summary(rows: List[Dict[str, Any]], path: str = "") -> None:
    print(f"Sweep of {len(rows)} run(s):")
    for row in rows:
        where = f"job {row['job_id']}" if row.get("job_id") else row["status"]
        print(f"  {where:>22}  {row['run_dir']}  [{' '.join(row['overrides'])}]")
        if row.get("stderr"):
            print(f"  {'':>22}  log: {row['stderr']}")
    if path:
        print(f"Summary written to {path}")


def launch_sweep(overrides: Sequence[str], dry_run: bool = False) -> List[Any]:
    """Expand the sweep and submit it as one job array (or run it locally); return the submitit jobs."""
    from ssl_ext.launch import dispatch, slurm

    runs = expand(overrides)
    first = runs[0].cfg
    if len(runs) == 1 and not any(o.startswith(SWEEP_FILE_PREFIX) for o in overrides):
        # Commas that are not a sweep (a quoted string, a mapping): one ordinary run.
        return [dispatch.launch(first, overrides, dry_run=dry_run)]
    if not dispatch.runs_on_slurm(first):
        return [run_locally(runs)]
    params = common_sbatch_parameters(runs)
    sweep_root = os.path.dirname(runs[0].run_dir)
    folder = slurm.log_folder(first, sweep_root)
    if dry_run or first.config.SLURM.DRY_RUN:
        print(slurm.sbatch_script(params, folder, array_size=len(runs) if len(runs) > 1 else None))
        for run in runs:
            print(f"# run {run.run_dir}: {' '.join(run.overrides)}")
        print("# --- composed config of the first run ---")
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(runs[0].cfg, resolve=True))
        return []
    rows = [{"run_dir": r.run_dir, "overrides": r.overrides, "status": "already finished (DONE)"} for r in runs]
    todo = [(row, run) for row, run in zip(rows, runs) if not slurm.finished_marker(run.cfg)]
    if not todo:
        print_summary(rows)
        print("Every run of this sweep has already finished: nothing to do.")
        return []
    for _, run in todo:
        os.makedirs(run.run_dir, exist_ok=True)
    executor = slurm.make_executor(params, folder)
    jobs = slurm.submit(executor, [slurm.training_job(run.cfg, run.run_dir) for _, run in todo], params)
    for (row, run), job in zip(todo, jobs):
        row.update(slurm.describe_job(job, run.run_dir), status="submitted")
    array_id = str(jobs[0].job_id).split("_")[0]
    path = os.path.join(sweep_root, f"sweep_{array_id}.json")
    with open(path, "w") as f:
        json.dump({"array_job_id": array_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": rows}, f, indent=2)
    print_summary(rows, path)
    print(f"  follow:  squeue -j {array_id}    sacct -j {array_id}\n  cancel:  scancel {array_id}")
    return jobs


def run_locally(runs: Sequence[SweepRun]) -> Dict[str, Any]:
    """Without SLURM: run the combinations here, one after another."""
    from ssl_ext.launch.dispatch import launch

    results = {}
    for run in runs:
        print(f"Sweep run {run.run_dir} [{' '.join(run.overrides)}]")
        results[run.run_dir] = launch(run.cfg)
    return results
