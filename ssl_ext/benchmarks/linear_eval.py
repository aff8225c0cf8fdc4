"""``linear_eval`` engine: linear classification of frozen features, in one of two modes.

``BENCHMARK.LINEAR.MODE``:

* ``fast`` — a grid of ``LEARNING_RATES`` x ``WEIGHT_DECAYS`` linear heads trained
  at once on cached features (``ssl_ext.benchmarks.linear_fast``, DINOv2's recipe,
  arXiv:2304.07193). The grid point is chosen on a seeded, stratified holdout of
  train (``BENCHMARK.SELECT_ON``/``HOLDOUT_FRACTION``, ``ssl_ext.benchmarks.selection``),
  refit on all of train and evaluated once on val; the row names the chosen point
  and the grid's holdout scores are in results.json. ``SELECT_ON: val`` (DINOv2's
  best-on-val) is opt-in and labelled "best on val";
* ``protocol`` — VISSL's protocol on images with a frozen trunk
  (``ssl_ext.benchmarks.linear_protocol``).

The fast grid has its own momentum, Nesterov flag and schedule (``FAST.MOMENTUM``,
``FAST.NESTEROV``, ``FAST.SCHEDULE``: cosine without warm-up by default), so a
pretraining config's optimizer or warm-up never changes its probe, and floors
evaluated through one method's config are probed exactly like every other method.
The protocol mode trains with ``OPTIMIZER``, as VISSL's linear benchmarks do.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict

import torch
from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.benchmarks import feature_store
from ssl_ext.benchmarks.extraction import device_for, ensure_features
from ssl_ext.benchmarks.linear_fast import standardize, top1_per_head, train_linear_grid
from ssl_ext.benchmarks.linear_protocol import run_protocol
from ssl_ext.benchmarks.metrics import classification_metrics
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.benchmarks.selection import LABELS, method_label, selection_settings, stratified_holdout
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)


FEATURE_NORMS = ("batchnorm", "standardize", "none")


def fast_epochs(cfg: DictConfig) -> int:
    epochs = int(cfg.config.BENCHMARK.LINEAR.FAST.NUM_EPOCHS)
    return epochs if epochs > 0 else int(cfg.config.OPTIMIZER.NUM_EPOCHS)


def _fast_layer(cfg: DictConfig, features: Dict[str, Any], layer: str, device: torch.device) -> Dict[str, Any]:
    from ssl_ext.engine.schedules import build_schedule

    c = cfg.config
    fast = c.BENCHMARK.LINEAR.FAST
    train, val, num_classes, groups = feature_store.load_train_val(cfg, features, layer)
    train_x, val_x = torch.from_numpy(train.features), torch.from_numpy(val.features)
    train_y, val_y = torch.from_numpy(train.labels), torch.from_numpy(val.labels)
    feature_norm = str(fast.FEATURE_NORM)
    if feature_norm not in FEATURE_NORMS:
        raise ValueError(f"config.BENCHMARK.LINEAR.FAST.FEATURE_NORM must be one of {list(FEATURE_NORMS)}, got {feature_norm!r}")
    if feature_norm != "none":
        train_x, val_x = standardize(train_x, val_x)
    select_on, fraction = selection_settings(cfg, legacy_fraction=float(fast.HOLDOUT_FRACTION))
    epochs = fast_epochs(cfg)
    shape = build_schedule(str(fast.SCHEDULE), start=1.0, end=0.0, key="config.BENCHMARK.LINEAR.FAST.SCHEDULE")

    def train_grid(x, y, learning_rates, weight_decays):
        return train_linear_grid(
            x, y, num_classes, learning_rates=learning_rates, weight_decays=weight_decays,
            epochs=epochs, batch_size=int(fast.BATCH_SIZE),
            momentum=float(fast.MOMENTUM), nesterov=bool(fast.NESTEROV),
            lr_factor=shape, regularize_bias=bool(c.OPTIMIZER.REGULARIZE_BIAS), learn_affine=feature_norm == "batchnorm",
            regularize_affine=bool(c.OPTIMIZER.REGULARIZE_NORM), seed=int(c.SEED_VALUE), device=device,
        )

    learning_rates = [float(x) for x in fast.LEARNING_RATES]
    weight_decays = [float(x) for x in fast.WEIGHT_DECAYS]
    started = time.time()
    if select_on == "val":
        grid = train_grid(train_x, train_y, learning_rates, weight_decays)
        val_scores = grid.scores(val_x)
        selection = top1_per_head(val_scores, val_y)
        best = int(selection.argmax())
        reported = val_scores[best]
    else:
        kept, held = (torch.from_numpy(i) for i in stratified_holdout(train.labels, fraction, int(c.SEED_VALUE)))
        grid = train_grid(train_x[kept], train_y[kept], learning_rates, weight_decays)
        selection = top1_per_head(grid.scores(train_x[held]), train_y[held])
        best = int(selection.argmax())
        # Refit the chosen setting on all of train, so the probe sees every image (tail classes have few).
        lr, wd = grid.settings[best]
        reported = train_grid(train_x, train_y, [lr], [wd]).scores(val_x)[0]
    seconds = round(time.time() - started, 3)
    lr, wd = grid.settings[best]
    row = {
        "layer": layer, "method": method_label("linear (fast)", select_on),
        **classification_metrics(reported.cpu(), val_y, groups),
        "lr": lr, "weight_decay": wd, "selected_on": LABELS[select_on], "epochs": epochs, "seconds": seconds,
    }
    score_name = "val_top1" if select_on == "val" else "holdout_top1"
    table = [{"lr": s[0], "weight_decay": s[1], score_name: float(selection[i])} for i, s in enumerate(grid.settings)]
    predicted = reported.argmax(dim=1).cpu()
    per_class = {
        "correct": torch.bincount(val_y[predicted == val_y], minlength=num_classes).tolist(),
        "total": torch.bincount(val_y, minlength=num_classes).tolist(),
    }
    return {"row": row, "grid": table, "selected_on": LABELS[select_on], "per_class": per_class}


def run_fast(cfg: DictConfig) -> Dict[str, Any]:
    features = ensure_features(cfg)
    result: Dict[str, Any] = {}
    if du.is_primary():
        device = device_for(cfg)
        per_layer = {layer: _fast_layer(cfg, features, layer, device) for layer in features["layers"]}
        result = {
            "mode": "fast",
            "features_dir": features["features_dir"],
            "rows": [v["row"] for v in per_layer.values()],
            "grid": {layer: v["grid"] for layer, v in per_layer.items()},
            "selected_on": next(iter(per_layer.values()))["selected_on"],
            # Val images and correct predictions per class, to score any class grouping afterwards.
            "per_class": {layer: v["per_class"] for layer, v in per_layer.items()},
        }
    return du.broadcast_object(result)


MODES: Dict[str, Callable[[DictConfig], Dict[str, Any]]] = {"fast": run_fast, "protocol": run_protocol}


@register_engine("linear_eval")
def linear_eval_engine(cfg: DictConfig) -> Dict[str, Any]:
    mode = str(cfg.config.BENCHMARK.LINEAR.MODE)
    if mode not in MODES:
        raise ValueError(f"config.BENCHMARK.LINEAR.MODE must be one of {sorted(MODES)}, got {mode!r}")
    result = {"engine": "linear_eval", **MODES[mode](cfg)}
    if du.is_primary():
        result["files"] = write_results(output_dir(cfg, "linear_eval"), result, f"Linear evaluation ({mode}), accuracy %")
        for row in result["rows"]:
            logger.info("linear_eval (%s) %s: top-1 %.2f%%", mode, row["layer"], row["top1"])
    return result
