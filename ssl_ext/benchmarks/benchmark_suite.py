"""``benchmark_suite`` engine: run a list of benchmarks on one checkpoint and write one table.

Each entry of ``BENCHMARK.SUITE.BENCHMARKS`` names a benchmark config
(``{NAME, CONFIG, OVERRIDES}``). Its config is composed like a command line
(``config=<CONFIG> <OVERRIDES...>``), then the suite's model is put in:
``MODEL.TRUNK`` and ``MODEL.WEIGHTS_INIT`` come from the suite config (one
checkpoint, one architecture), as do ``MACHINE``, ``DISTRIBUTED`` and
``SEED_VALUE``; each benchmark writes into ``<suite dir>/<NAME>``. The engines run
one after the other in the same processes, so a suite launched on N ranks runs
every benchmark on N ranks. Every config is composed and validated before the
first benchmark starts, so a typo in the last entry does not waste the others.
The suite writes ``results.json`` and ``results.md`` with one row per benchmark
result row, prefixed with the benchmark name and the ``model`` evaluated.

Floors (``BENCHMARK.SUITE.FLOORS``, both by default): every benchmark also runs
on ``pixels`` (the raw-pixel trunk, the image at the benchmark's evaluation size
and channels) and on ``random_init`` (the suite's trunk at its seeded random
initialisation), with the same probe, and their rows follow the model's. A number
that does not beat its floors says the pretraining learned nothing useful there.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

import registry
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)
CARRIED_OVER = ("MODEL.TRUNK", "MODEL.WEIGHTS_INIT", "MACHINE", "DISTRIBUTED", "SEED_VALUE", "PLUGINS")
FLOORS = ("pixels", "random_init")
FLOOR_LABELS = {"pixels": "floor: raw pixels", "random_init": "floor: random-init trunk"}


def _entries(cfg: DictConfig) -> List[Dict[str, Any]]:
    entries = OmegaConf.to_container(cfg.config.BENCHMARK.SUITE.BENCHMARKS, resolve=True) or []
    if not entries:
        raise ValueError(
            "config.BENCHMARK.SUITE.BENCHMARKS is empty: list the benchmarks to run, e.g. "
            "[{NAME: digits_knn, CONFIG: benchmark/tiny/digits_knn}] (see configs_yaml/benchmark/suite/)."
        )
    names = set()
    for i, entry in enumerate(entries):
        where = f"config.BENCHMARK.SUITE.BENCHMARKS[{i}]"
        if not isinstance(entry, dict) or not entry.get("NAME") or not entry.get("CONFIG"):
            raise ValueError(f"{where} must be a mapping with NAME and CONFIG (and optional OVERRIDES), got {entry!r}")
        unknown = set(entry) - {"NAME", "CONFIG", "OVERRIDES"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed are NAME, CONFIG, OVERRIDES")
        if entry["NAME"] in names:
            raise ValueError(f"{where}: NAME {entry['NAME']!r} is used twice; names label rows and output folders")
        names.add(entry["NAME"])
        overrides = entry.get("OVERRIDES") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ValueError(f"{where}.OVERRIDES must be a list of 'config.X=value' strings, got {overrides!r}")
    return entries


def compose_benchmark(cfg: DictConfig, entry: Dict[str, Any], suite_dir: str) -> DictConfig:
    """The config of one suite entry, with the suite's model, machine and output folder."""
    from ssl_ext.config import compose_config

    sub = compose_config([f"config={entry['CONFIG']}", *(entry.get("OVERRIDES") or [])])
    for key in CARRIED_OVER:
        OmegaConf.update(sub, f"config.{key}", OmegaConf.select(cfg, f"config.{key}"), merge=False)
    sub.config.CHECKPOINT.DIR = os.path.join(suite_dir, str(entry["NAME"]))
    sub.config.BENCHMARK.OUTPUT_DIR = ""
    if sub.config.ENGINE_NAME == "benchmark_suite":
        raise ValueError(f"Suite entry {entry['NAME']!r}: {entry['CONFIG']} is itself a suite; suites do not nest.")
    return sub


def floors_of(cfg: DictConfig) -> List[str]:
    """``BENCHMARK.SUITE.FLOORS`` checked; ``random_init`` is dropped when the model itself is random init."""
    from ssl_ext.engine.weights import uses_random_init

    floors = [str(f) for f in (cfg.config.BENCHMARK.SUITE.get("FLOORS", list(FLOORS)) or [])]
    unknown = [f for f in floors if f not in FLOORS]
    if unknown:
        raise ValueError(f"config.BENCHMARK.SUITE.FLOORS: unknown floor(s) {unknown}; known: {list(FLOORS)}")
    if uses_random_init(cfg.config.MODEL.WEIGHTS_INIT):
        floors = [f for f in floors if f != "random_init"]
    return floors


def floor_config(sub: DictConfig, floor: str) -> DictConfig:
    """The benchmark config ``sub`` turned into one of its floors (same data, transform and probe)."""
    sub = copy.deepcopy(sub)
    sub.config.CHECKPOINT.DIR = os.path.join(str(sub.config.CHECKPOINT.DIR), f"floor_{floor}")
    OmegaConf.update(sub, "config.MODEL.WEIGHTS_INIT.RANDOM_INIT", True, merge=False)
    if floor == "pixels":
        transform = OmegaConf.to_container(sub.config.DATA.VAL.TRANSFORM.PARAMS, resolve=True) or {}
        trunk = OmegaConf.to_container(sub.config.MODEL.TRUNK.PARAMS, resolve=True) or {}
        channels = int(transform.get("channels", trunk.get("in_channels", 3)))
        size = int(transform.get("size", trunk.get("img_size", 16)))
        OmegaConf.update(sub, "config.MODEL.TRUNK", {"NAME": "pixels", "PARAMS": {"in_channels": channels, "image_size": size}}, merge=False)
        OmegaConf.update(sub, "config.BENCHMARK.FEATURES.LAYERS", [], merge=False)
    return sub


def model_label(cfg: DictConfig) -> str:
    from ssl_ext.engine.weights import uses_random_init

    if uses_random_init(cfg.config.MODEL.WEIGHTS_INIT):
        return "random init"
    weights = str(cfg.config.MODEL.WEIGHTS_INIT.PARAMS_FILE).rstrip("/")
    return os.path.basename(weights) or weights


@registry.register_engine("benchmark_suite")
def benchmark_suite_engine(cfg: DictConfig) -> Dict[str, Any]:
    suite_dir = output_dir(cfg, "benchmark_suite")
    entries = _entries(cfg)
    floors = floors_of(cfg)
    # Rank 0 composes (hydra writes a search folder) and every rank gets the same configs.
    containers = None
    if du.is_primary():
        containers = [OmegaConf.to_container(compose_benchmark(cfg, e, suite_dir), resolve=True) for e in entries]
    containers = du.broadcast_object(containers)
    label = model_label(cfg)
    rows, results = [], {}
    for entry, container in zip(entries, containers):
        sub = OmegaConf.create(container)
        engine_name = str(sub.config.ENGINE_NAME)
        runs = [(label, sub)] + [(FLOOR_LABELS[f], floor_config(sub, f)) for f in floors]
        for run_label, run_cfg in runs:
            logger.info("benchmark_suite: running %s (%s, engine %s) on %s", entry["NAME"], entry["CONFIG"], engine_name, run_label)
            result = registry.build_engine(engine_name, cfg=run_cfg) or {}
            if run_label == label:
                results[entry["NAME"]] = {"config": entry["CONFIG"], "engine": engine_name, "files": result.get("files")}
            else:
                results[entry["NAME"]].setdefault("floors", {})[run_label] = result.get("files")
            rows += [{"benchmark": entry["NAME"], "model": run_label, "engine": engine_name, **row} for row in result.get("rows", [])]
    summary = {
        "engine": "benchmark_suite",
        "weights_init": OmegaConf.to_container(cfg.config.MODEL.WEIGHTS_INIT, resolve=True),
        "trunk": OmegaConf.to_container(cfg.config.MODEL.TRUNK, resolve=True),
        "floors": floors,
        "benchmarks": results,
        "rows": rows,
    }
    if du.is_primary():
        weights = str(cfg.config.MODEL.WEIGHTS_INIT.PARAMS_FILE) or "random init"
        summary["files"] = write_results(suite_dir, summary, f"Benchmark suite: {weights}")
    return summary
