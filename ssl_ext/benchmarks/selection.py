"""Where the probes choose their hyper-parameters: a seeded holdout of the training split, never the reported one.

Every probe that has a hyper-parameter to choose — the fast linear grid's
learning rate x weight decay, kNN's ``k``, low-shot's regularization ``lambda`` —
fits on part of train, scores each setting on a held-out part of train, keeps
the best, and only then touches val, once, with the chosen setting
(``BENCHMARK.SELECT_ON: train_holdout``, the default). Choosing on the split
that is reported inflates it by the maximum over the settings' noise, and the
inflation grows with the grid: a number chosen that way is not comparable with
one that was not.

``SELECT_ON: val`` (DINOv2's published recipe) is an explicit opt-in; every row
it produces says "best on val" in its ``method`` and ``selected_on`` columns.

The holdout is stratified: each class gives ``round(fraction * n_c)`` of its
images (at least one when it has two or more, none when it has one), drawn from
``SEED_VALUE``, so the rare classes of a long-tailed set take part in the choice
and the held-out part has train's class histogram.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

SELECT_ON = ("train_holdout", "val")
LABELS = {"train_holdout": "train holdout", "val": "best on val"}


def selection_settings(cfg: Any, legacy_fraction: float = -1.0) -> Tuple[str, float]:
    """(``BENCHMARK.SELECT_ON``, holdout fraction) with their checks.

    ``legacy_fraction`` is ``LINEAR.FAST.HOLDOUT_FRACTION`` (> 0 overrides the shared
    fraction; 0 used to mean "choose on val", which now needs ``SELECT_ON: val``).
    """
    bench = cfg.config.BENCHMARK
    select_on = str(bench.SELECT_ON)
    if select_on not in SELECT_ON:
        raise ValueError(f"config.BENCHMARK.SELECT_ON must be one of {list(SELECT_ON)}, got {select_on!r}")
    fraction = float(bench.HOLDOUT_FRACTION)
    if legacy_fraction == 0.0 and select_on == "train_holdout":
        raise ValueError(
            "config.BENCHMARK.LINEAR.FAST.HOLDOUT_FRACTION=0 used to choose the grid point on val; choosing on the "
            "reported split is now an explicit opt-in: set config.BENCHMARK.SELECT_ON=val (rows are labelled "
            "'best on val'), or leave HOLDOUT_FRACTION at -1 to use config.BENCHMARK.HOLDOUT_FRACTION."
        )
    if legacy_fraction > 0:
        fraction = float(legacy_fraction)
    if select_on == "train_holdout" and not 0.0 < fraction < 1.0:
        raise ValueError(f"config.BENCHMARK.HOLDOUT_FRACTION must be in (0, 1), got {fraction}")
    return select_on, fraction


def method_label(method: str, select_on: str) -> str:
    """``method`` as shown in tables: val-chosen results carry their label."""
    return f"{method}, best on val" if select_on == "val" else method


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices; each class holds out ``round(fraction * n)`` images, at least 1 of 2+."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"config.BENCHMARK.HOLDOUT_FRACTION must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0x401D])
    held = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = 0 if members.size < 2 else min(members.size - 1, max(1, int(round(fraction * members.size))))
        held.append(rng.choice(members, size=take, replace=False))
    held_ids = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept_ids = np.setdiff1d(np.arange(labels.size), held_ids)
    return kept_ids.astype(np.int64), held_ids.astype(np.int64)
