"""Parameter schedules (lr, weight decay, EMA momentum, loss hyper-parameters) on fvcore's schedulers.

A schedule maps training progress ``where`` in [0, 1) to a value. Warm-up is a
linear ramp over the first ``warmup_fraction``, composed with fvcore's
CompositeParamScheduler.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)

from ssl_ext.config.errors import ConfigError

SCHEDULE_NAMES = ("cosine", "constant", "linear", "step")


def _main_schedule(name: str, start: float, end: float, milestones: Sequence[float], gamma: float, key: str) -> ParamScheduler:
    if name == "cosine":
        return CosineParamScheduler(start, end)
    if name == "linear":
        return LinearParamScheduler(start, end)
    if name == "constant":
        return ConstantParamScheduler(start)
    if name == "step":
        values = [start * gamma**i for i in range(len(milestones) + 1)]
        return _FractionStep(values, list(milestones))
    raise ConfigError(f"{key}: unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}.")


class _FractionStep(ParamScheduler):
    """Piecewise-constant schedule with boundaries given as fractions of training."""

    def __init__(self, values, boundaries):
        self._values, self._boundaries = values, boundaries

    def __call__(self, where: float) -> float:
        return self._values[sum(where >= b for b in self._boundaries)]


def build_schedule(
    name: str,
    start: float,
    end: float = 0.0,
    warmup_fraction: float = 0.0,
    warmup_start: float = 0.0,
    milestones_fraction: Sequence[float] = (),
    gamma: float = 0.1,
    key: str = "schedule",
) -> ParamScheduler:
    """``start`` is the value after warm-up; ``end`` the final value (cosine/linear)."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ConfigError(f"{key}: warm-up must be shorter than training, got a fraction of {warmup_fraction}.")
    adjusted = [(m - warmup_fraction) / (1 - warmup_fraction) for m in milestones_fraction]
    main = _main_schedule(name, start, end, adjusted, gamma, key)
    if warmup_fraction == 0:
        return main
    return CompositeParamScheduler(
        [LinearParamScheduler(warmup_start, start), main],
        lengths=[warmup_fraction, 1 - warmup_fraction],
        interval_scaling=["rescaled", "rescaled"],
    )


def lr_schedule(opt_cfg: Mapping[str, Any], peak_lr: float, num_epochs: float) -> ParamScheduler:
    sched = opt_cfg["LR_SCHEDULE"]
    epochs = max(float(num_epochs), 1e-12)
    return build_schedule(
        sched["NAME"],
        start=peak_lr,
        end=peak_lr * float(sched["END_FACTOR"]),
        warmup_fraction=float(sched["WARMUP_EPOCHS"]) / epochs,
        warmup_start=peak_lr * float(sched["WARMUP_START_FACTOR"]),
        milestones_fraction=[float(m) / epochs for m in sched["MILESTONES"]],
        gamma=float(sched["GAMMA"]),
        key="config.OPTIMIZER.LR_SCHEDULE",
    )


def wd_schedule(opt_cfg: Mapping[str, Any]) -> ParamScheduler:
    sched = opt_cfg["WD_SCHEDULE"]
    return build_schedule(
        sched["NAME"], start=float(opt_cfg["WEIGHT_DECAY"]), end=float(sched["WEIGHT_DECAY_END"]),
        key="config.OPTIMIZER.WD_SCHEDULE",
    )


def loss_param_schedule(name: str, spec: Mapping[str, Any]) -> ParamScheduler:
    """``LOSS_SCHEDULES.<attr>: {NAME, START, END, WARMUP_FRACTION, MILESTONES, GAMMA}``."""
    known = {"NAME", "START", "END", "WARMUP_FRACTION", "MILESTONES", "GAMMA"}
    unknown = set(spec) - known
    if unknown or "NAME" not in spec or "START" not in spec:
        raise ConfigError(
            f"config.LOSS_SCHEDULES.{name}: needs NAME and START (optional END, WARMUP_FRACTION, MILESTONES as "
            f"fractions of training, GAMMA); got keys {sorted(spec)}."
        )
    return build_schedule(
        spec["NAME"], start=float(spec["START"]), end=float(spec.get("END", spec["START"])),
        warmup_fraction=float(spec.get("WARMUP_FRACTION", 0.0)), warmup_start=float(spec.get("START")),
        milestones_fraction=list(spec.get("MILESTONES", [])), gamma=float(spec.get("GAMMA", 0.1)),
        key=f"config.LOSS_SCHEDULES.{name}",
    )
