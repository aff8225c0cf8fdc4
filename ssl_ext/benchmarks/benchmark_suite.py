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
result row, prefixed with the benchmark name.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

import registry
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)
CARRIED_OVER = ("MODEL.TRUNK", "MODEL.WEIGHTS_INIT", "MACHINE", "DISTRIBUTED", "SEED_VALUE", "PLUGINS")


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


@registry.register_engine("benchmark_suite")
def benchmark_suite_engine(cfg: DictConfig) -> Dict[str, Any]:
    suite_dir = output_dir(cfg, "benchmark_suite")
    entries = _entries(cfg)
    # Rank 0 composes (hydra writes a search folder) and every rank gets the same configs.
    containers = None
    if du.is_primary():
        containers = [OmegaConf.to_container(compose_benchmark(cfg, e, suite_dir), resolve=True) for e in entries]
    containers = du.broadcast_object(containers)
    rows, results = [], {}
    for entry, container in zip(entries, containers):
        sub = OmegaConf.create(container)
        engine_name = str(sub.config.ENGINE_NAME)
        logger.info("benchmark_suite: running %s (%s, engine %s)", entry["NAME"], entry["CONFIG"], engine_name)
        result = registry.build_engine(engine_name, cfg=sub) or {}
        results[entry["NAME"]] = {"config": entry["CONFIG"], "engine": engine_name, "files": result.get("files")}
        rows += [{"benchmark": entry["NAME"], "engine": engine_name, **row} for row in result.get("rows", [])]
    summary = {
        "engine": "benchmark_suite",
        "weights_init": OmegaConf.to_container(cfg.config.MODEL.WEIGHTS_INIT, resolve=True),
        "trunk": OmegaConf.to_container(cfg.config.MODEL.TRUNK, resolve=True),
        "benchmarks": results,
        "rows": rows,
    }
    if du.is_primary():
        weights = str(cfg.config.MODEL.WEIGHTS_INIT.PARAMS_FILE) or "random init"
        summary["files"] = write_results(suite_dir, summary, f"Benchmark suite: {weights}")
    return summary
