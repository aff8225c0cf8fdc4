"""Where one composed config runs: on SLURM or on this machine. The one place that decides.

``config.SLURM.USE_SLURM`` picks the launcher; everything that starts a run (the
command line, the sweep launcher for a single combination, the hidden-prior study)
goes through :func:`launch` instead of reading that key itself.
"""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig


def runs_on_slurm(cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks to be submitted to SLURM (``config.SLURM.USE_SLURM``)."""
    return bool(cfg.config.SLURM.USE_SLURM)


def launch(cfg: DictConfig, overrides: Sequence[str] = (), dry_run: bool = False, wait: bool = False) -> Any:
    """Run ``cfg``'s engine where the config says.

    Locally (in this process, or ``NUM_PROC_PER_NODE`` processes on this machine) it
    returns the engine's result. On SLURM it submits the run and returns ``None``: with
    ``wait=True`` it first blocks until the job ends and raises the job's error if it
    failed. ``overrides`` (the command line that composed ``cfg``) and ``dry_run`` only
    matter on SLURM, where they are printed with the sbatch script.
    """
    if runs_on_slurm(cfg):
        from ssl_ext.launch.slurm import launch_on_slurm

        jobs = launch_on_slurm(cfg, overrides, dry_run=dry_run)
        if wait:
            for job in jobs:
                job.results()
        return None
    from ssl_ext.launch.local import launch as launch_here

    return launch_here(cfg)
