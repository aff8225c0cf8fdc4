"""The runs of the study, and how each is pretrained and evaluated (locally or on SLURM).

Every run is an ssl_ext config: ``config=<plan's config>`` plus overrides for the
data subset, the sampler arm or the prior, the epochs, the seed and the run dir.
Evaluation composes the run's own ``train_config.yaml`` with the engine switched
to ``linear_eval`` (fast mode), ``knn`` and ``cluster_analysis``; the three share one
feature cache. A run that already finished (its ``DONE`` marker) is not trained
again and an evaluation whose ``results.json`` is newer than the checkpoint is
reused, so an interrupted study continues where it stopped.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ssl_ext.engine.run_state import done_record

logger = logging.getLogger(__name__)

EVALUATIONS = ("linear", "knn", "analysis")
TIMINGS_FILE = "study_timings.json"
ENGINE_OF = {"linear": "linear_eval", "knn": "knn", "analysis": "cluster_analysis", "linear_balanced": "linear_eval"}
FOLDER_OF = {"linear_balanced": "linear_eval_balanced"}


@dataclass
class RunSpec:
    study: str  # "sampler" | "prior"
    name: str  # e.g. "simclr_imbalanced", "pmsn_tau0.5", "random_init_cnn"
    config: str
    overrides: List[str]
    seed: int
    pretrain: bool = True
    labels: Dict[str, Any] = field(default_factory=dict)
    # Class-order seed of the long-tailed set (prior study); None when the data is not made long-tailed here.
    order: Optional[int] = None

    @property
    def key(self) -> str:
        order = "" if self.order is None else f"/order{self.order}"
        return f"{self.study}/{self.name}{order}/seed{self.seed}"


def build_runs(plan: Dict[str, Any], data_overrides: List[str]) -> List[RunSpec]:
    """Every run of the plan, in execution order: per seed, the sampler study then the prior study."""
    common = list(plan["overrides"]) + list(data_overrides)
    baseline = bool(plan["evaluation"]["random_init_baseline"])
    pixels = bool(plan["evaluation"].get("pixels_baseline", False))
    runs: List[RunSpec] = []
    for seed in plan["seeds"]:
        if plan["sampler_study"]["enabled"]:
            runs += _sampler_runs(plan["sampler_study"], common, seed, baseline, pixels)
        if plan["prior_study"]["enabled"]:
            orders = plan["prior_study"].get("class_orders") or [0]
            for order in orders if plan["prior_study"]["long_tail"] else [None]:
                runs += _prior_runs(plan["prior_study"], common, seed, baseline, pixels, order)
    return runs


def method_epochs(study: Dict[str, Any], method: Dict[str, Any]) -> int:
    """A sampler-study method's training length: its own ``epochs``, else the study's."""
    return int(method.get("epochs", study["epochs"]))


def _sampler_runs(study: Dict[str, Any], common: List[str], seed: int, baseline: bool, pixels: bool = False) -> List[RunSpec]:
    """Each method in each arm: the class_imbalanced sampler with the arm's K on the balanced data."""
    base = common + list(study["overrides"])
    runs = []
    for method in study["methods"]:
        for arm in study["arms"]:
            arm_overrides = [
                "config.DATA.TRAIN.SAMPLER.NAME=class_imbalanced",
                f"config.DATA.TRAIN.SAMPLER.PARAMS={{classes_per_batch: {arm['classes_per_batch']}}}",
                f"config.OPTIMIZER.NUM_EPOCHS={method_epochs(study, method)}",
            ]
            runs.append(RunSpec(
                "sampler", f"{method['key']}_{arm['key']}", method["config"],
                base + list(method.get("overrides", [])) + arm_overrides, seed,
                labels={"method": method["key"], "method_label": method.get("label", method["key"]),
                        "arm": arm["key"], "arm_label": arm.get("label", arm["key"]),
                        "classes_per_batch": arm["classes_per_batch"]},
            ))
    floors = _random_init_runs(study["methods"], "sampler", base, seed) if baseline else []
    floors += [_pixels_run(study["methods"][0], "sampler", base, seed)] if pixels and study["methods"] else []
    return runs + floors


def _prior_runs(study: Dict[str, Any], common: List[str], seed: int, baseline: bool, pixels: bool = False,
                order: Optional[int] = None) -> List[RunSpec]:
    """MSN, PMSN (one run per tau) and the plan's other prototype methods (a prior-matching one once per tau) on the
    long-tailed data (class order ``order``), with the default random sampler."""
    lt = study["long_tail"]
    # No long_tail: the data is long-tailed already (iNaturalist).
    long_tail = [
        "config.DATA.TRAIN.LONG_TAIL.ENABLED=true", f"config.DATA.TRAIN.LONG_TAIL.PROFILE={lt['profile']}",
        f"config.DATA.TRAIN.LONG_TAIL.IMBALANCE_RATIO={float(lt['imbalance_ratio'])}",
        f"config.DATA.TRAIN.LONG_TAIL.SEED={int(lt['seed'])}",
        "config.DATA.TRAIN.LONG_TAIL.CLASS_ORDER=random", f"config.DATA.TRAIN.LONG_TAIL.CLASS_ORDER_SEED={int(order or 0)}",
    ] if lt else []
    base = common + list(study["overrides"]) + long_tail + [f"config.OPTIMIZER.NUM_EPOCHS={study['epochs']}"]
    msn, pmsn = study["msn"], study["pmsn"]
    runs = [RunSpec("prior", "msn", msn["config"], base + list(msn["overrides"]), seed,
                    labels={"method": "msn", "method_label": msn["label"], "tau": None})]
    for tau in study["taus"]:
        prior = f"config.LOSS.PARAMS.prior={{NAME: power_law, PARAMS: {{tau: {float(tau)}}}}}"
        runs.append(RunSpec(
            "prior", f"pmsn_tau{tau:g}", pmsn["config"], base + list(pmsn["overrides"]) + [prior], seed,
            labels={"method": "pmsn", "method_label": f"{pmsn['label']} (tau={tau:g})", "tau": float(tau)},
        ))
    for method in study.get("methods", []):
        overrides = base + list(method.get("overrides", []))
        label = method.get("label", method["key"])
        if not method.get("prior_of"):
            runs.append(RunSpec("prior", method["key"], method["config"], overrides, seed,
                                labels={"method": method["key"], "method_label": label, "tau": None}))
            continue
        for tau in study["taus"]:
            prior = f"config.LOSS.PARAMS.prior={{NAME: power_law, PARAMS: {{tau: {float(tau)}}}}}"
            runs.append(RunSpec("prior", f"{method['key']}_tau{tau:g}", method["config"], overrides + [prior], seed,
                                labels={"method": method["key"], "method_label": f"{label} (tau={tau:g})", "tau": float(tau),
                                        "prior_of": method["prior_of"]}))
    msn_method = {"key": "msn", "config": msn["config"], "overrides": msn["overrides"]}
    if baseline:
        runs += _random_init_runs([msn_method, *study.get("methods", [])], "prior", base, seed)
    if pixels:
        runs.append(_pixels_run(msn_method, "prior", base, seed))
    for run in runs:
        run.order = order
    return runs


def _pixels_run(method: Dict[str, Any], study: str, overrides: List[str], seed: int) -> RunSpec:
    """The raw-pixel floor: ``method``'s data and probes with the pixels trunk at the val transform's size."""
    from ssl_ext.config import compose_config

    cfg = compose_config([f"config={method['config']}", *overrides, *method.get("overrides", [])])
    params = cfg.config.DATA.VAL.TRANSFORM.PARAMS
    trunk = f"+config.MODEL.TRUNK={{NAME: pixels, PARAMS: {{in_channels: {int(params.get('channels', 3))}, image_size: {int(params.get('size', 16))}}}}}"
    # The method's evaluated layers (e.g. a ViT's avgpool_last1) do not exist on the pixels trunk: its only layer is used.
    return RunSpec(study, "pixels", method["config"],
                   overrides + list(method.get("overrides", [])) + ["~config.MODEL.TRUNK", trunk, "config.BENCHMARK.FEATURES.LAYERS=[]"],
                   seed, pretrain=False, labels={"method": "pixels", "method_label": "raw pixels", "trunk_of": "pixels"})


def _random_init_runs(methods: List[Dict[str, Any]], study: str, overrides: List[str], seed: int) -> List[RunSpec]:
    """One random-init evaluation per distinct trunk among ``methods`` (named after the first method using it)."""
    from omegaconf import OmegaConf

    from ssl_ext.config import compose_config

    seen = {}
    for method in methods:
        cfg = compose_config([f"config={method['config']}", *overrides, *method.get("overrides", [])])
        trunk = json.dumps(OmegaConf.to_container(cfg.config.MODEL.TRUNK, resolve=True), sort_keys=True)
        seen.setdefault(trunk, method)
    return [
        RunSpec(study, f"random_init_{m['key']}", m["config"], overrides + list(m.get("overrides", [])), seed, pretrain=False,
                labels={"method": "random_init", "method_label": f"random init ({m['key']} trunk)", "trunk_of": m["key"]})
        for m in seen.values()
    ]


def execute(cfg) -> Optional[Any]:
    """Run ``cfg``'s engine: in this process / local processes, or on SLURM (waiting for the job)."""
    from ssl_ext.launch.dispatch import launch

    return launch(cfg, wait=True)


def run_dir_of(out: str, spec: RunSpec) -> str:
    order = [] if spec.order is None else [f"order{spec.order}"]
    return os.path.join(out, "runs", spec.study, spec.name, *order, f"seed{spec.seed}")


def pretrain(spec: RunSpec, run_dir: str) -> str:
    """Train (or find the finished run) and return its final checkpoint."""
    from ssl_ext.config import compose_config
    from ssl_ext.engine.checkpoint import list_checkpoints

    cfg = compose_config([f"config={spec.config}", *spec.overrides, f"config.SEED_VALUE={spec.seed}",
                          f"config.CHECKPOINT.DIR={run_dir}"])
    execute(cfg)
    found = list_checkpoints(run_dir)
    if not found:
        raise RuntimeError(f"Run {spec.key} produced no checkpoint in {run_dir}; see its log for the error")
    return found[0][1]


def _fresh(results_path: str, checkpoint: str) -> bool:
    if not os.path.exists(results_path):
        return False
    return not checkpoint or os.path.getmtime(results_path) >= os.path.getmtime(checkpoint)


def evaluate(spec: RunSpec, run_dir: str, checkpoint: str, plan: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
    """Linear probe, kNN and cluster analysis of one run: (results.json contents by evaluation name, whether any ran)."""
    from ssl_ext.config import compose_config

    evaluation = plan["evaluation"]
    if spec.pretrain:
        base = [f"config={os.path.join(run_dir, 'train_config.yaml')}"]
    else:
        base = [f"config={spec.config}", *spec.overrides, f"config.SEED_VALUE={spec.seed}", f"config.CHECKPOINT.DIR={run_dir}"]
    base += [*plan["overrides"], "config.HOOKS.EXTRA=[]", f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE='{checkpoint}'",
             f"config.MODEL.WEIGHTS_INIT.SOURCE={evaluation['source'] if spec.pretrain else 'student'}",
             f"config.BENCHMARK.FEATURES.DIR={os.path.join(run_dir, 'features')}"]
    results, ran = {}, False
    names = list(EVALUATIONS)
    if spec.study == "prior" and spec.order is not None and evaluation.get("balanced_reference", False):
        names.append("linear_balanced")
    for name in names:
        folder = os.path.join(run_dir, FOLDER_OF.get(name, ENGINE_OF[name]))
        path = os.path.join(folder, "results.json")
        if not _fresh(path, checkpoint):
            ran = True
            extra = list(evaluation[name]) if name in evaluation else list(evaluation["linear"])
            if name == "linear_balanced":
                # The same probe fitted on the balanced train set (its own feature cache); the report scores it on
                # the long-tailed set's class groups.
                extra += ["config.DATA.TRAIN.LONG_TAIL.ENABLED=false",
                          f"config.BENCHMARK.FEATURES.DIR={os.path.join(run_dir, 'features_balanced')}"]
            cfg = compose_config(base + [
                f"config.ENGINE_NAME={ENGINE_OF[name]}", "config.BENCHMARK.LINEAR.MODE=fast",
                f"config.BENCHMARK.OUTPUT_DIR={folder}", f"config.ANALYSIS.OUTPUT_DIR={folder}", *extra,
            ])
            execute(cfg)
        with open(path) as f:
            results[name] = json.load(f)
    return results, ran


def _timings(run_dir: str, seconds: Dict[str, float], pretrained: bool, evaluated: bool) -> Dict[str, Any]:
    """This invocation's times for the work it did; the recorded times of work an earlier invocation did."""
    path = os.path.join(run_dir, TIMINGS_FILE)
    previous = {}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
    timings = {
        "pretrain": seconds["pretrain"] if pretrained or "pretrain" not in previous else previous["pretrain"],
        "evaluation": seconds["evaluation"] if evaluated or "evaluation" not in previous else previous["evaluation"],
    }
    timings["reused"] = not (pretrained or evaluated)
    from ssl_ext.utils.io import atomic_write_text

    atomic_write_text(path, json.dumps({k: timings[k] for k in ("pretrain", "evaluation")}))
    return timings


def run_one(spec: RunSpec, out: str, plan: Dict[str, Any]) -> Dict[str, Any]:
    """Pretrain (unless a random-init baseline) and evaluate; a record for the report."""
    run_dir = run_dir_of(out, spec)
    finished_before = done_record(run_dir) is not None
    started = time.time()
    checkpoint = pretrain(spec, run_dir) if spec.pretrain else ""
    trained = time.time()
    results, evaluated = evaluate(spec, run_dir, checkpoint, plan)
    seconds = {"pretrain": round(trained - started, 1), "evaluation": round(time.time() - trained, 1)}
    record = {
        "key": spec.key, "study": spec.study, "name": spec.name, "seed": spec.seed, "order": spec.order, "labels": spec.labels,
        "config": spec.config, "overrides": spec.overrides, "run_dir": run_dir, "checkpoint": checkpoint,
        "seconds": _timings(run_dir, seconds, pretrained=spec.pretrain and not finished_before, evaluated=evaluated),
        "results": results,
    }
    training = done_record(run_dir)
    if training is not None:
        record["training"] = training
    logger.info("%s: pretrain %.0fs, evaluation %.0fs", spec.key, record["seconds"]["pretrain"], record["seconds"]["evaluation"])
    return record
