"""Run the whole hidden-uniform-prior study from a plan and write its report.

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR
2023, arXiv:2210.07277. ``run_study`` writes into the plan's output dir::

    report.md                 tables, findings, plots, the exact command, timings
    results.json              every run's evaluation results and the study summary
    plan.yaml                 the plan as run (defaults + file + overrides)
    *.png                     study plots (accuracy bars, sorted cluster sizes, prototype usage)
    data/                     the class-balanced data subset (when the plan asks for one)
    runs/<study>/<run>/seed<s>/   each run: checkpoints, train_config.yaml, metrics,
                              linear_eval/, knn/, cluster_analysis/ (with its own plots)
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shlex
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from ssl_ext.studies.hidden_prior.idx_subset import write_idx_subset
from ssl_ext.studies.hidden_prior.plan import load_plan
from ssl_ext.studies.hidden_prior.runs import build_runs, method_epochs, run_one
from ssl_ext.studies.hidden_prior.sections import prior_section, sampler_section
from ssl_ext.benchmarks.results import json_safe
from ssl_ext.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


def data_overrides(plan: Dict[str, Any], out: str) -> List[str]:
    subset = plan.get("data_subset")
    if not subset:
        return []
    folder = os.path.join(out, "data", "subset")
    manifest = write_idx_subset(
        subset["source"], folder, {"train": int(subset["train_per_class"]), "val": int(subset["val_per_class"])}, int(subset["seed"])
    )
    logger.info("Data subset in %s: %s", folder, manifest["images"])
    return [f"config.DATA.TRAIN.DATA_PATHS=['{folder}']", f"config.DATA.VAL.DATA_PATHS=['{folder}']"]


def split_overrides(overrides: List[str]) -> Tuple[List[str], List[str]]:
    """(plan overrides, run overrides): ``config.X=v`` / ``+config...`` / ``~config...`` go to every run."""
    runs = [o for o in overrides if o.lstrip("+~").startswith("config")]
    return [o for o in overrides if o not in runs], runs


def prepare(plan_name: str, overrides: List[str], out: Optional[str]) -> Tuple[Dict[str, Any], str]:
    plan_overrides, run_overrides = split_overrides(list(overrides))
    plan = load_plan(plan_name, plan_overrides)
    plan["overrides"] = list(plan["overrides"]) + run_overrides
    plan["run_overrides"] = run_overrides
    return plan, os.path.abspath(out or plan["output_dir"])


def dry_run(plan_name: str, overrides: List[str] = (), out: Optional[str] = None) -> List[str]:
    """Compose (and so validate) every run's pretraining config without running anything; one line per run."""
    from ssl_ext.studies.hidden_prior.runs import run_dir_of
    from ssl_ext.config import compose_config

    plan, out = prepare(plan_name, overrides, out)
    folder = os.path.join(out, "data", "subset")
    # Nothing is written, so the subset does not exist yet: configs are validated against its source (same
    # format) and printed with the subset's path.
    source = str(plan["data_subset"]["source"]) if plan["data_subset"] else ""
    data = [f"config.DATA.TRAIN.DATA_PATHS=['{source}']", f"config.DATA.VAL.DATA_PATHS=['{source}']"] if source else []
    lines = []
    for spec in build_runs(plan, data):
        args = [f"config={spec.config}", *spec.overrides, f"config.SEED_VALUE={spec.seed}",
                f"config.CHECKPOINT.DIR={run_dir_of(out, spec)}"]
        compose_config(args)
        args = [a.replace(f"'{source}'", f"'{folder}'") for a in args] if source else args
        action = "pretrain + evaluate" if spec.pretrain else f"evaluate the {spec.labels.get('method_label', 'floor')} floor"
        lines.append(f"{spec.key} ({action}): " + " ".join(shlex.quote(a) for a in args))
    return lines


def run_study(plan_name: str, overrides: List[str] = (), out: Optional[str] = None, command: str = "") -> Dict[str, Any]:
    """Run every run of the plan and write the report; return the study record.

    ``overrides``: plan keys (``sampler_study.epochs=2``) and, for every run, ``config.X=v``.
    """
    plan, out = prepare(plan_name, overrides, out)
    os.makedirs(out, exist_ok=True)
    if int(plan["num_threads"]) > 0:
        import torch

        torch.set_num_threads(int(plan["num_threads"]))
        # Spawned local processes (DISTRIBUTED.NUM_PROC_PER_NODE > 1) read it from the environment.
        os.environ["OMP_NUM_THREADS"] = str(int(plan["num_threads"]))
    from omegaconf import OmegaConf

    atomic_write_text(os.path.join(out, "plan.yaml"), OmegaConf.to_yaml(OmegaConf.create(plan)))
    started = time.time()
    overrides = data_overrides(plan, out)
    runs = build_runs(plan, overrides)
    logger.info("Study %r: %d runs into %s", plan["title"], len(runs), out)
    records = []
    for index, spec in enumerate(runs, 1):
        logger.info("[%d/%d] %s", index, len(runs), spec.key)
        records.append(run_one(spec, out, plan))
    seconds = time.time() - started
    study = {"plan": plan, "command": command, "output_dir": out, "seconds": round(seconds, 1), "runs": records}
    study["report"] = write_report(study, out)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(json_safe(study), indent=1) + "\n")
    return study


def _sampler_epochs(sampler: Dict[str, Any]) -> str:
    """``6 epochs`` or, when some methods train for their own length, ``6 epochs (MAE: 60)``."""
    own = [f"{m.get('label', m['key'])}: {method_epochs(sampler, m)}" for m in sampler["methods"]
           if method_epochs(sampler, m) != sampler["epochs"]]
    return f"{sampler['epochs']} epochs" + (f" ({', '.join(own)})" if own else "")


def write_report(study: Dict[str, Any], out: str) -> Dict[str, Any]:
    plan, records = study["plan"], study["runs"]
    sections, summary, plots = [], {}, []
    if plan["sampler_study"]["enabled"]:
        text, summary["sampler"] = sampler_section(records, plan, out)
        arms = ", ".join(f"{a['label']} (K = {a['classes_per_batch']})" for a in plan["sampler_study"]["arms"])
        sections.append(
            "## 1. Sampler study (the paper's Table 1 design)\n\n"
            f"Every method is pretrained {_sampler_epochs(plan['sampler_study'])} on the class-balanced train set, once per "
            f"sampler arm: {arms}. The class_imbalanced sampler puts exactly K classes in every batch while each class keeps "
            "its marginal frequency; the first arm is the reference of the drop. Linear probe (fast mode, on frozen trunk "
            "features) and kNN on the balanced val images, top-1 %. k-means τ is the power-law exponent fitted to the sorted "
            "sizes of k-means clusters of the train features with k = number of classes (0 = equal sizes); NMI is against "
            "the labels.\n\n" + text + "\n" + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n\n"
                                                     for p in summary["sampler"]["plots"])
        )
        plots += summary["sampler"]["plots"]
    if plan["prior_study"]["enabled"]:
        text, summary["prior"] = prior_section(records, plan, out)
        lt = plan["prior_study"]["long_tail"]
        hist = summary["prior"].get("train_class_histogram", {})
        sizes = ", ".join(str(int(s)) for s in hist.get("sorted_sizes", []))
        made = (f"{lt['profile']} class frequencies, largest/smallest = {lt['imbalance_ratio']:g}" if lt
                else "the configs' own (long-tailed) data")
        sections.append(
            "## 2. Prior study (uniform vs prior-matching methods on long-tailed data)\n\n"
            f"Long-tailed train set: {made} "
            f"(class sizes {_short(sizes)}; fitted τ of the class histogram {hist.get('tau', float('nan')):.2f}). "
            f"MSN (me-max: uniform prior) and PMSN (KL to a power-law prior over the prototypes, τ swept) are pretrained "
            f"{plan['prior_study']['epochs']} epochs with the random sampler, then evaluated on the balanced val images; "
            + _other_prior_methods(plan) +
            "head / medium / tail are the train-set class groups. Which classes are head and tail is drawn at random: "
            f"every row averages class orders {plan['prior_study'].get('class_orders')} x seeds {plan['seeds']} "
            "(mean ± std over those runs). The balanced-train probe column is the same probe fitted on the balanced "
            "train set, scored on the same groups: a group low in both columns is hard, a group low only in the "
            "long-tailed column suffers from its rarity. The floors (raw pixels, random-init trunk) go through the "
            "same probes. p̄ fitted τ is the exponent of the sorted mean prototype "
            "assignment on the train images (uniform = 0).\n\n" + text + "\n"
            + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n\n" for p in summary["prior"]["plots"])
        )
        plots += summary["prior"]["plots"]
    timing = "\n".join(
        f"| {r['key']}{' (earlier invocation)' if r['seconds'].get('reused') else ''} | {r['seconds']['pretrain']:.0f} "
        f"| {r['seconds']['evaluation']:.0f} |" for r in records
    )
    compute = sum(r["seconds"]["pretrain"] + r["seconds"]["evaluation"] for r in records)
    header = (
        f"# {plan['title']}\n\n"
        f"Reproduction of Assran et al., \"The Hidden Uniform Cluster Prior in Self-Supervised Learning\" "
        f"(ICLR 2023, arXiv:2210.07277) with ssl_ext.\n\n"
        f"- command: `{study['command'] or 'run_study(...)'}`\n"
        f"- plan: `{plan['plan_file']}` with overrides `{' '.join(plan['plan_overrides'] + plan['run_overrides']) or 'none'}` "
        "(as run: plan.yaml)\n"
        f"- seeds: {plan['seeds']}; finished {datetime.datetime.now().isoformat(timespec='seconds')} on "
        f"{platform.node()} ({os.cpu_count()} CPUs); runs took {compute / 60:.1f} min in total (pretraining + "
        f"evaluation, as first run), this invocation {study['seconds'] / 60:.1f} min\n"
        f"- runs: `runs/<study>/<run>/seed<s>/` (checkpoints, train_config.yaml, linear_eval/, knn/, cluster_analysis/)\n\n"
        "Differences are called significant when larger than twice their standard error; with one seed that error is the "
        "binomial error of the val accuracies only, which ignores training noise (see ssl_ext/studies/hidden_prior/report.py).\n\n"
    )
    text = header + "\n".join(sections) + "\n## Timing (seconds)\n\n| run | pretrain | evaluation |\n|---|---|---|\n" + timing + "\n"
    path = os.path.join(out, "report.md")
    atomic_write_text(path, text)
    return {"markdown": path, "plots": plots, "summary": summary}


def _other_prior_methods(plan: Dict[str, Any]) -> str:
    """One sentence on the plan's other prototype methods (prior_study.methods), empty when there are none."""
    methods = plan["prior_study"].get("methods", [])
    if not methods:
        return ""
    labels = {m["key"]: m.get("label", m["key"]) for m in methods}
    parts = [f"{labels[m['key']]} (the prior of {labels[m['prior_of']]} replaced by the power law, same τ sweep)"
             if m.get("prior_of") else f"{labels[m['key']]} (its own uniform prior)" for m in methods]
    return "the same protocol for " + ", ".join(parts) + "; "


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(",", 1)[0] + ", ..."


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]) if sys.argv else "", *sys.argv[1:]])
