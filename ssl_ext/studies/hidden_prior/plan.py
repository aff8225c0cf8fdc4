"""The study plan of tools/reproduce_hidden_prior.py: which runs, on which data, evaluated how.

A plan is a YAML file (``configs_yaml/study/<scale>/hidden_prior*.yaml``) merged over
``DEFAULT_PLAN`` and then over ``key=value`` command-line overrides (OmegaConf dotlist
syntax: ``sampler_study.epochs=1``, ``prior_study.taus=[0.5]``). Unknown keys are
errors naming the closest valid key, so a typo cannot silently fall back to a default.
Every run is an ordinary ssl_ext config (``config=<name>`` plus overrides), so what a
plan describes can be re-run by hand with ``tools/run_distributed_engines.py``.
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, List, Sequence

from omegaconf import OmegaConf

DEFAULT_PLAN: Dict[str, Any] = {
    # Shown at the top of the report.
    "title": "Hidden uniform prior reproduction",
    # Folder of the runs, the data subset and the report (relative paths are taken from the working directory).
    "output_dir": "./runs/hidden_prior",
    # torch threads of this process (0 = torch's default). One thread is fastest for tiny models on a
    # shared 2-core machine: two spinning OpenMP threads were 5-7x slower there under load.
    "num_threads": 1,
    # Each run is repeated with these seeds (config.SEED_VALUE); tables show mean ± std over them.
    "seeds": [0],
    # Class-balanced subset of an IDX dataset written to <output_dir>/data and used through DATA_PATHS
    # (null: the configs' data as they are, e.g. a dataset catalog entry at full scale).
    "data_subset": {"source": "/usr/share/datasets/fashion-mnist", "train_per_class": 1000, "val_per_class": 300, "seed": 0},
    # Overrides for every run, pretraining and evaluation (e.g. the SLURM launcher preset).
    "overrides": [],
    "evaluation": {
        # Network of the checkpoint to evaluate: student | teacher.
        "source": "student",
        # Evaluate randomly initialised trunks too (per architecture and dataset): a floor SSL must beat.
        "random_init_baseline": True,
        # Evaluate raw pixels with the same probes (the pixels trunk at the val transform's size): the other floor.
        "pixels_baseline": True,
        # Prior study: also probe every trunk with the *balanced* train set and report its accuracy on the
        # long-tailed set's head / medium / tail classes, so a group's difficulty and its rarity can be told apart.
        "balanced_reference": True,
        # kNN row of the report (one of BENCHMARK.KNN.K).
        "knn_k": 20,
        # Overrides of the linear_eval (fast mode), knn and cluster_analysis engines.
        "linear": [],
        "knn": [],
        "analysis": [],
    },
    "sampler_study": {
        "enabled": True,
        "epochs": 10,
        # [{key, label, config, overrides, expect_drop, epochs}]: methods pretrained in every arm; a method's own
        # epochs replaces the study's (masked-image models are trained far longer than joint-embedding ones).
        "methods": [],
        # [{key, label, classes_per_batch}]: class_imbalanced sampler arms; the first is the reference of the drop.
        "arms": [],
        # Overrides of every run of this study.
        "overrides": [],
    },
    "prior_study": {
        "enabled": True,
        "epochs": 10,
        # Long-tailed train set (DATA.TRAIN.LONG_TAIL): power_law | exponential, largest / smallest class;
        # null when the configs' data is long-tailed already (iNaturalist).
        "long_tail": {"profile": "power_law", "imbalance_ratio": 100.0, "seed": 0},
        # Which classes are head and tail (LONG_TAIL.CLASS_ORDER_SEED, CLASS_ORDER: random): every run is repeated
        # per order and tables average over orders x seeds, so "tail accuracy" is not which classes happen to be easy.
        "class_orders": [0],
        # {label, config, overrides}: the uniform-prior baseline and the prior-matching method.
        "msn": {"label": "MSN", "config": "", "overrides": []},
        "pmsn": {"label": "PMSN", "config": "", "overrides": []},
        # Power-law exponents of PMSN's prior (LOSS.PARAMS.prior.PARAMS.tau), one run each.
        "taus": [0.25],
        # Other prototype methods next to MSN / PMSN: [{key, label, config, overrides, prior_of}]. An entry with
        # prior_of (the key of its uniform-prior entry, e.g. pswav -> swav) is a prior-matching method: its loss
        # takes LOSS.PARAMS.prior like PMSN's, it runs once per tau and is compared with that entry; an entry
        # without it runs once with its own uniform prior (SwAV's equipartition, DINO's centering).
        "methods": [],
        "overrides": [],
    },
}
METHOD_KEYS = {"key", "label", "config", "overrides"}
# expect_drop (sampler study, default true): false for the paper's control arms (MAE, data2vec: no volume-maximizing
# term over the batch), for which it predicts no drop; the report's verdict then reads the other way round.
SAMPLER_METHOD_KEYS = METHOD_KEYS | {"expect_drop", "epochs"}
ARM_KEYS = {"key", "label", "classes_per_batch"}
PRIOR_METHOD_KEYS = METHOD_KEYS | {"prior_of"}


class PlanError(ValueError):
    """A plan that cannot run; the message names the plan file and key."""


def _check_keys(node: Any, schema: Any, where: str, origin: str) -> None:
    if not isinstance(schema, dict) or not isinstance(node, dict):
        return
    for key, value in node.items():
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" Did you mean '{where}{close[0]}'?" if close else f" Valid keys: {sorted(schema)}"
            raise PlanError(f"{origin}: unknown plan key '{where}{key}'.{hint}")
        _check_keys(value, schema[key], f"{where}{key}.", origin)


def _check_items(items: Sequence[Any], required: set, where: str, origin: str) -> None:
    seen = set()
    for item in items:
        if not isinstance(item, dict) or not required.issuperset(item) or "key" not in item:
            raise PlanError(f"{origin}: every entry of {where} needs keys {sorted(required)} (at least 'key'), got {item!r}")
        if item["key"] in seen:
            raise PlanError(f"{origin}: {where} has the key {item['key']!r} twice")
        seen.add(item["key"])


def validate(plan: Dict[str, Any], origin: str) -> Dict[str, Any]:
    _check_keys(plan, DEFAULT_PLAN, "", origin)
    sampler, prior = plan["sampler_study"], plan["prior_study"]
    _check_items(sampler["methods"], SAMPLER_METHOD_KEYS, "sampler_study.methods", origin)
    _check_items(sampler["arms"], ARM_KEYS, "sampler_study.arms", origin)
    for arm in sampler["arms"]:
        k = arm.get("classes_per_batch")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PlanError(f"{origin}: sampler_study.arms[{arm['key']}].classes_per_batch must be an int >= 1, got {k!r}")
    if sampler["enabled"] and (not sampler["methods"] or len(sampler["arms"]) < 2):
        raise PlanError(f"{origin}: sampler_study needs methods and at least two arms (the first is the reference)")
    if prior["enabled"]:
        for name in ("msn", "pmsn"):
            if not prior[name]["config"]:
                raise PlanError(f"{origin}: prior_study.{name}.config is empty: name the pretraining config")
        _check_items(prior["methods"], PRIOR_METHOD_KEYS, "prior_study.methods", origin)
        keys = {m["key"] for m in prior["methods"]}
        for method in prior["methods"]:
            if not method.get("config"):
                raise PlanError(f"{origin}: prior_study.methods[{method['key']}].config is empty: name the pretraining config")
            if method.get("prior_of") and method["prior_of"] not in keys:
                raise PlanError(f"{origin}: prior_study.methods[{method['key']}].prior_of={method['prior_of']!r} is not the key "
                                f"of another entry of prior_study.methods (have {sorted(keys)})")
            if method["key"] in ("msn", "pmsn", "pixels") or method["key"].startswith("random_init"):
                raise PlanError(f"{origin}: prior_study.methods: the key {method['key']!r} is taken by the study's own runs")
        if not prior["taus"] or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0 for t in prior["taus"]):
            raise PlanError(f"{origin}: prior_study.taus must be a non-empty list of numbers >= 0, got {prior['taus']!r}")
    epochs = [(f"{study}.epochs", plan[study]["epochs"]) for study in ("sampler_study", "prior_study")]
    epochs += [(f"sampler_study.methods[{m['key']}].epochs", m["epochs"]) for m in sampler["methods"] if "epochs" in m]
    for where, value in epochs:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"{origin}: {where} must be an int >= 1, got {value!r}")
    orders = plan["prior_study"]["class_orders"]
    if not orders or any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in orders):
        raise PlanError(f"{origin}: prior_study.class_orders must be a non-empty list of ints >= 0 (class-order seeds), got {orders!r}")
    if not plan["seeds"] or any(isinstance(s, bool) or not isinstance(s, int) for s in plan["seeds"]):
        raise PlanError(f"{origin}: seeds must be a non-empty list of ints, got {plan['seeds']!r}")
    if plan["evaluation"]["source"] not in ("student", "teacher"):
        raise PlanError(f"{origin}: evaluation.source must be student or teacher, got {plan['evaluation']['source']!r}")
    return plan


def resolve_plan_path(name: str) -> str:
    """A plan file: an existing path, or a name under configs_yaml (``study/cpu/hidden_prior``)."""
    from ssl_ext.config.errors import ConfigError
    from ssl_ext.config.paths import resolve_yaml

    try:
        return str(resolve_yaml(name, what="--plan"))
    except ConfigError as exc:
        raise PlanError(f"{exc} Plans live in configs_yaml/study/*/hidden_prior*.yaml.") from None


def load_plan(name: str, overrides: List[str] = ()) -> Dict[str, Any]:
    """Defaults <- plan file <- ``key=value`` overrides, validated."""
    path = resolve_plan_path(name)
    try:
        from_file = OmegaConf.load(path)
    except Exception as exc:  # yaml errors come in several types; all mean the same to the user
        raise PlanError(f"{path}: not a readable YAML plan: {exc}") from None
    file_plan = OmegaConf.to_container(from_file, resolve=True) or {}
    _check_keys(file_plan, DEFAULT_PLAN, "", path)
    try:
        from_cli = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=True)
    except Exception as exc:
        raise PlanError(f"Plan overrides {list(overrides)}: {exc}") from None
    _check_keys(from_cli, DEFAULT_PLAN, "", "command line")
    merged = OmegaConf.merge(OmegaConf.create(DEFAULT_PLAN), OmegaConf.create(file_plan), OmegaConf.create(from_cli))
    plan = OmegaConf.to_container(merged, resolve=True)
    plan["plan_file"] = path
    plan["plan_overrides"] = list(overrides)
    return validate({k: v for k, v in plan.items() if k not in ("plan_file", "plan_overrides")}, path) | {
        "plan_file": path, "plan_overrides": list(overrides)}
