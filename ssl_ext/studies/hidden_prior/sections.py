"""The two sections of the report: the sampler study and the prior study (see ``report``)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from ssl_ext.studies.hidden_prior.report import (
    GROUPS, balanced_group_accuracy, bar_plot, cluster_details, difference_verdict, fmt, group_records, knn_row, linear_row, mean_std,
    prototype_details, sorted_curves_plot, val_counts,
)

LINE_STYLES = ("-", "--", "-.", ":")


def _verdict(diff: float, se: float, significant: bool, expected_sign: int, seeds: int) -> str:
    if not significant:
        return "within noise: not reproduced at this scale"
    direction = "the paper's direction" if diff * expected_sign > 0 else "opposite to the paper"
    if seeds < 2:
        # The binomial error leaves out training noise, which can be larger (the prior study's linear probe on a
        # long-tailed train set moves by several points between seeds): one seed cannot confirm a finding.
        return f"{direction}, beyond the val-sampling error only; one seed is not conclusive (run seeds=[0,1,2])"
    return "as in the paper" if diff * expected_sign > 0 else "opposite to the paper"


def _control_verdict(diff: float, significant: bool) -> str:
    """A control arm (no volume-maximizing term): the paper predicts no drop."""
    if not significant:
        return "no drop beyond noise, as the paper predicts for a method without a volume-maximizing term"
    if diff > 0:
        return "a drop, which the paper does not predict for a method without a volume-maximizing term"
    return "a gain with class-imbalanced batches (the paper predicts no change)"


def _metric(records: List[Dict[str, Any]], getter) -> Tuple[List[float], float, float]:
    values = [float(getter(r)) for r in records]
    mean, std = mean_std(values)
    return values, mean, std


def sampler_section(records: List[Dict[str, Any]], plan: Dict[str, Any], folder: str) -> Tuple[str, Dict[str, Any]]:
    study = plan["sampler_study"]
    grouped = group_records(records, "sampler")
    arms, methods, k = study["arms"], study["methods"], int(plan["evaluation"]["knn_k"])
    reference, others = arms[0], arms[1:]
    nseeds = len(plan["seeds"])
    columns = (["method"] + [f"linear {a['label']}" for a in arms] + [f"linear drop ({a['label']})" for a in others]
               + [f"kNN-{k} {a['label']}" for a in arms] + [f"kNN drop ({a['label']})" for a in others]
               + [f"k-means τ / NMI {a['label']}" for a in arms])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    summary: Dict[str, Any] = {}
    findings = []
    bars: Dict[str, List[float]] = {a["label"]: [] for a in arms}
    errors: Dict[str, List[float]] = {a["label"]: [] for a in arms}
    curves = []
    for m_index, method in enumerate(methods):
        per_arm = {a["key"]: grouped.get(f"{method['key']}_{a['key']}", []) for a in arms}
        if not all(per_arm.values()):
            continue
        lin = {a: _metric(rs, lambda r: linear_row(r)["top1"]) for a, rs in per_arm.items()}
        knn = {a: _metric(rs, lambda r: knn_row(r, k)["top1"]) for a, rs in per_arm.items()}
        clusters = {a: [cluster_details(r)[0] for r in rs] for a, rs in per_arm.items()}
        n_val = val_counts(per_arm[reference["key"]][0]).get("top1", 0)
        row = [method.get("label", method["key"])]
        row += [fmt(lin[a["key"]][1], lin[a["key"]][2], nseeds) for a in arms]
        entry: Dict[str, Any] = {"linear": {}, "knn": {}, "drop": {}, "kmeans_tau": {}, "nmi": {}}
        drops_lin, drops_knn = [], []
        for other in others:
            for metric, store, cells in (("linear", lin, drops_lin), ("knn", knn, drops_knn)):
                diff, se, kind, significant = difference_verdict(store[reference["key"]][0], store[other["key"]][0], n_val, n_val)
                cells.append(f"{diff:+.2f} ± {se:.2f}")
                paired = [a - b for a, b in zip(store[reference["key"]][0], store[other["key"]][0])]
                entry["drop"].setdefault(other["key"], {})[metric] = {"drop": diff, "se": se, "se_kind": kind, "significant": significant,
                                                                      "sd": mean_std(paired)[1], "per_seed": paired}
                if metric == "linear":
                    findings.append(
                        f"- **{method.get('label')}**: linear top-1 {lin[reference['key']][1]:.2f} with {reference['label']} "
                        f"vs {lin[other['key']][1]:.2f} with {other['label']}: drop {diff:+.2f} ± {se:.2f} ({kind}) — "
                        f"{_verdict(diff, se, significant, +1, len(store[reference['key']][0])) if method.get('expect_drop', True) else _control_verdict(diff, significant)}."
                    )
        row += drops_lin
        row += [fmt(knn[a["key"]][1], knn[a["key"]][2], nseeds) for a in arms]
        row += drops_knn
        for a in arms:
            taus = [c["tau"] for c in clusters[a["key"]]]
            nmis = [c["nmi"] for c in clusters[a["key"]]]
            row.append(f"{mean_std(taus)[0]:.2f} / {mean_std(nmis)[0]:.2f}")
            entry["linear"][a["key"]] = lin[a["key"]][1:]
            entry["knn"][a["key"]] = knn[a["key"]][1:]
            entry["kmeans_tau"][a["key"]] = mean_std(taus)[0]
            entry["nmi"][a["key"]] = mean_std(nmis)[0]
            bars[a["label"]].append(lin[a["key"]][1])
            errors[a["label"]].append(lin[a["key"]][2])
            curves.append((f"{method.get('label')}, {a['label']}", clusters[a["key"]][0]["sorted_sizes"],
                           f"C{m_index}{LINE_STYLES[arms.index(a) % len(LINE_STYLES)]}"))
        summary[method["key"]] = entry
        lines.append("| " + " | ".join(row) + " |")
    floors = {}
    for name, rs in grouped.items():
        if name.startswith("random_init_") or name == "pixels":
            floor_label = "raw pixels" if name == "pixels" else f"random init ({rs[0]['labels'].get('trunk_of')} trunk)"
            floors[floor_label] = mean_std([linear_row(r)["top1"] for r in rs])[0]
            lines.append(f"| {rs[0]['labels']['method_label']} (no pretraining) | "
                         + " | ".join([fmt(*mean_std([linear_row(r)["top1"] for r in rs]), nseeds)] + [""] * (len(columns) - 2)) + " |")
    drops = _drop_table(summary, methods, reference, others[-1] if others else None, floors, nseeds) if summary and others else ""
    plots = []
    if summary:
        labels = [m.get("label", m["key"]) for m in methods if m["key"] in summary]
        plots.append(bar_plot(os.path.join(folder, "sampler_study_linear.png"), labels, bars,
                              errors if nseeds > 1 else {}, "linear top-1 (%)",
                              "Sampler study: linear probe,\nclass-balanced vs class-imbalanced batches", floors))
        first_records = next(iter(grouped.values()))
        _, label_hist = cluster_details(first_records[0])
        curves.append(("class sizes (labels)", label_hist["sorted_sizes"], "k--"))
        plots.append(sorted_curves_plot(os.path.join(folder, "sampler_study_cluster_sizes.png"), curves,
                                        "Sampler study: sorted k-means cluster sizes\n(k = number of classes, train features)",
                                        "fraction of images"))
    text = "\n".join(lines) + "\n\n" + drops + "\n".join(findings) + "\n"
    return text, {"methods": summary, "plots": plots, "random_init_linear": floors}


def _drop_table(summary: Dict[str, Any], methods: List[Dict[str, Any]], reference: Dict[str, Any], last: Dict[str, Any],
                floors: Dict[str, float], nseeds: int) -> str:
    """Per method: linear top-1 in the reference and the most imbalanced arm, the drop ± its seed spread, and the
    margin of the reference arm over the raw-pixel floor (a drop from below the floor says little)."""
    pixels = floors.get("raw pixels")
    spread = "sd over seeds" if nseeds > 1 else "binomial SE (one seed)"
    lines = [f"Drop from {reference['label']} to {last['label']} per method (linear probe; ± {spread}), next to the "
             f"raw-pixel floor ({fmt(pixels) if pixels is not None else 'not run'}):\n",
             f"| method | linear {reference['label']} | linear {last['label']} | drop | {reference['label']} − pixels |",
             "|---|---|---|---|---|"]
    for method in methods:
        entry = summary.get(method["key"])
        if entry is None:
            continue
        ref, low = entry["linear"][reference["key"]], entry["linear"][last["key"]]
        drop = entry["drop"][last["key"]]["linear"]
        spread_value = drop["sd"] if nseeds > 1 else drop["se"]
        margin = f"{ref[0] - pixels:+.2f}" if pixels is not None else "–"
        lines.append(f"| {method.get('label', method['key'])} | {fmt(ref[0], ref[1], nseeds)} | {fmt(low[0], low[1], nseeds)} "
                     f"| {drop['drop']:+.2f} ± {spread_value:.2f} | {margin} |")
    return "\n".join(lines) + "\n\n"


def prior_section(records: List[Dict[str, Any]], plan: Dict[str, Any], folder: str) -> Tuple[str, Dict[str, Any]]:
    grouped = group_records(records, "prior")
    k = int(plan["evaluation"]["knn_k"])
    nseeds = len(plan["seeds"]) * len(plan["prior_study"].get("class_orders") or [0])  # runs averaged per row
    columns = ["method", "linear top-1", *[f"linear {g}" for g in GROUPS],
               "balanced-train probe: head / medium / tail", f"kNN-{k} top-1", *[f"kNN {g}" for g in GROUPS],
               "p̄ fitted τ", "KL(p̄ ‖ prior)", "k-means τ", "NMI"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    summary: Dict[str, Any] = {}
    usage_curves, cluster_curves = [], []
    bars: Dict[str, List[float]] = {}
    errors: Dict[str, List[float]] = {}
    for index, (name, rs) in enumerate(grouped.items()):
        floor = name.startswith("random_init_") or name == "pixels"
        label = rs[0]["labels"]["method_label"] + (" (floor, no pretraining)" if floor else "")
        lin = {m: _metric(rs, lambda r, m=m: linear_row(r).get(m, float("nan"))) for m in ("top1", *GROUPS)}
        knn = {m: _metric(rs, lambda r, m=m: knn_row(r, k).get(m, float("nan"))) for m in ("top1", *GROUPS)}
        kmeans = [cluster_details(r)[0] for r in rs]
        usage = [prototype_details(r) for r in rs]
        soft = [u["soft"] for u in usage if u]
        nruns = len(rs)  # seeds x class orders
        row = [label] + [fmt(lin[m][1], lin[m][2], nruns) for m in ("top1", *GROUPS)]
        balanced = [b for b in (balanced_group_accuracy(r) for r in rs) if b]
        row.append(" / ".join(fmt(mean_std([b[g] for b in balanced])[0]) for g in GROUPS) if balanced else "–")
        row += [fmt(knn[m][1], knn[m][2], nruns) for m in ("top1", *GROUPS)]
        row += [fmt(mean_std([s["tau"] for s in soft])[0]) if soft else "–",
                fmt(mean_std([s.get("kl_prior", float("nan")) for s in soft])[0], digits=3) if soft else "–",
                fmt(mean_std([c["tau"] for c in kmeans])[0]), fmt(mean_std([c["nmi"] for c in kmeans])[0])]
        lines.append("| " + " | ".join(row) + " |")
        summary[name] = {"label": label, "tau_prior": rs[0]["labels"].get("tau"), "linear": {m: v[1] for m, v in lin.items()},
                         "balanced_probe": {g: mean_std([b[g] for b in balanced])[0] for g in ("top1", *GROUPS)} if balanced else None,
                         "runs": nruns,
                         "knn": {m: v[1] for m, v in knn.items()},
                         "usage_tau": mean_std([s["tau"] for s in soft])[0] if soft else None,
                         "kmeans_tau": mean_std([c["tau"] for c in kmeans])[0]}
        bars[label] = [lin[m][1] for m in ("top1", *GROUPS)]
        errors[label] = [lin[m][2] for m in ("top1", *GROUPS)]
        style = f"C{index % 10}-"
        if soft:
            usage_curves.append((f"{label}: p̄", soft[0]["sorted_sizes"], style))
            prior = usage[0].get("prior")
            if prior and rs[0]["labels"].get("tau") is not None:
                usage_curves.append((f"{label}: prior", prior["sorted_sizes"], f"C{index % 10}:"))
        cluster_curves.append((label, kmeans[0]["sorted_sizes"], style))
    findings = _prior_findings(grouped, summary, k, plan)
    plots = []
    if summary:
        plots.append(bar_plot(os.path.join(folder, "prior_study_linear.png"), ["overall", *GROUPS], bars, errors if nseeds > 1 else {},
                              "linear top-1 (%)", "Prior study: linear probe on balanced val,\nby train class group"))
        if usage_curves:
            plots.append(sorted_curves_plot(os.path.join(folder, "prior_study_prototype_usage.png"), usage_curves,
                                            "Prior study: sorted prototype usage p̄\non the long-tailed train set, vs each prior", "mass"))
        _, label_hist = cluster_details(next(iter(grouped.values()))[0])
        cluster_curves.append(("class sizes (labels)", label_hist["sorted_sizes"], "k--"))
        plots.append(sorted_curves_plot(os.path.join(folder, "prior_study_cluster_sizes.png"), cluster_curves,
                                        "Prior study: sorted k-means cluster sizes\n(k = number of classes, long-tailed train features)",
                                        "fraction of images"))
        summary_hist = {"sorted_sizes": label_hist["sorted_sizes"], "tau": label_hist["tau"]}
    else:
        summary_hist = {}
    text = "\n".join(lines) + "\n\n" + "\n".join(findings) + "\n"
    return text, {"methods": summary, "plots": plots, "train_class_histogram": summary_hist}


def _prior_findings(grouped, summary: Dict[str, Any], k: int, plan: Dict[str, Any]) -> List[str]:
    """PMSN against MSN, then every other prior-matching method against its uniform-prior entry (``prior_of``)."""
    findings: List[str] = []
    pairs = [("msn", "MSN", "pmsn", "PMSN")]
    labels = {m["key"]: m.get("label", m["key"]) for m in plan["prior_study"].get("methods", [])}
    pairs += [(m["prior_of"], labels[m["prior_of"]], m["key"], labels[m["key"]])
              for m in plan["prior_study"].get("methods", []) if m.get("prior_of")]
    for uniform, uniform_label, prior_key, prior_label in pairs:
        findings += _prior_pair_findings(grouped, summary, k, uniform, uniform_label, prior_key, prior_label)
    return findings


def _prior_pair_findings(grouped, summary: Dict[str, Any], k: int, uniform: str, uniform_label: str, prior_key: str,
                         prior_label: str) -> List[str]:
    if uniform not in grouped:
        return []
    base = grouped[uniform]
    prior_names = [n for n in grouped if n.startswith(f"{prior_key}_tau")]
    if not prior_names:
        return []
    counts = val_counts(base[0])
    best = max(prior_names, key=lambda n: summary[n]["linear"]["top1"])
    findings = [f"{prior_label} run with the best linear top-1: **{summary[best]['label']}** (chosen on val accuracy, "
                f"so slightly optimistic for {prior_label})."]
    for metric in ("top1", "tail", "head"):
        for name, getter in (("linear", lambda r: linear_row(r).get(metric)), (f"kNN-{k}", lambda r: knn_row(r, k).get(metric))):
            a = [float(getter(r)) for r in grouped[best]]
            b = [float(getter(r)) for r in base]
            if any(v is None or v != v for v in a + b):
                continue
            n = counts.get(metric, 0)
            diff, se, kind, significant = difference_verdict(a, b, n, n)
            findings.append(f"- {name} {metric}: {prior_label} − {uniform_label} = {diff:+.2f} ± {se:.2f} ({kind}) — "
                            f"{_verdict(diff, se, significant, +1, len(a))}.")
    for name in [uniform, *prior_names]:
        tau = summary[name]["usage_tau"]
        prior = summary[name]["tau_prior"]
        if tau is not None:
            findings.append(f"- {summary[name]['label']}: prototype usage p̄ fits τ = {tau:.2f} "
                            f"(its prior: τ = {0.0 if prior is None else prior:g}).")
    return findings
