"""Cluster analysis of a checkpoint: is its feature space split into equal-size clusters?

    ssl-ext-run cluster-analysis runs/msn                                  # a run dir: its newest checkpoint
    ssl-ext-run cluster-analysis runs/msn/checkpoints/model_iteration00000400.torch --source teacher
    ssl-ext-run cluster-analysis weights.pth --config pretrain/simclr/simclr_cpu_tiny --out runs/ana
    ... --clusters-per-class 1,4 --k 100 --split val [config.X=v ...]

Runs the ``cluster_analysis`` engine (ssl_ext/analysis/cluster_analysis.py): faiss
k-means on the trunk's features with k = multiples of the number of classes (and any
``--k``), the sorted cluster sizes against uniform and a fitted power law on log-log
plots, purity and NMI against the labels, and, for MSN/PMSN checkpoints, the prototype
usage against the loss's prior. Writes results.md, results.json and PNG plots into
``--out`` (default ``<run dir>/cluster_analysis``).

The model and data come from ``--config`` (a config name under configs_yaml or a YAML
path); for a checkpoint inside an ssl_ext run dir it defaults to the run's
``train_config.yaml``. It launches like any engine (``config.SLURM.USE_SLURM=true``
sends it to SLURM).
"""
import argparse
import os
import sys


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or the newest checkpoint of a run dir."""
    from ssl_ext.engine.checkpoint import list_checkpoints

    if os.path.isdir(path):
        found = list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"{path} is a folder without checkpoints/model_iteration*.torch: give a run dir or a checkpoint file")
        return found[0][1]
    if not os.path.exists(path) and "://" not in path:
        raise FileNotFoundError(f"checkpoint {path}: no such file or run dir")
    return path


def default_config(checkpoint: str) -> str:
    """``<run dir>/train_config.yaml`` for ``<run dir>/checkpoints/<file>``, if it exists."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for run_dir in (os.path.dirname(folder), folder):
        candidate = os.path.join(run_dir, "train_config.yaml")
        if os.path.exists(candidate):
            return candidate
    return ""


def build_overrides(args) -> list:
    checkpoint = resolve_checkpoint(args.checkpoint)
    config = args.config or default_config(checkpoint)
    if not config:
        raise FileNotFoundError(
            f"{checkpoint} is not inside an ssl_ext run dir (no train_config.yaml next to it): "
            f"give --config <config name or YAML> describing its model and data"
        )
    # Quoted so paths with '=' or ',' survive hydra's override grammar.
    overrides = [f"config={config}", "config.ENGINE_NAME=cluster_analysis",
                 f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE='{os.path.abspath(checkpoint)}'",
                 f"config.MODEL.WEIGHTS_INIT.SOURCE={args.source}", f"config.ANALYSIS.SPLIT={args.split.upper()}"]
    if args.out:
        out = os.path.abspath(args.out)
        overrides += [f"config.ANALYSIS.OUTPUT_DIR='{out}'", f"config.BENCHMARK.FEATURES.DIR='{os.path.join(out, 'features')}'"]
    if args.clusters_per_class is not None:
        overrides.append(f"config.ANALYSIS.CLUSTERS_PER_CLASS=[{args.clusters_per_class}]")
    if args.k is not None:
        overrides.append(f"config.ANALYSIS.NUM_CLUSTERS=[{args.k}]")
    return overrides + list(args.overrides)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file, or run dir (its newest checkpoint)")
    parser.add_argument("overrides", nargs="*", help="extra config.SECTION.KEY=value overrides")
    parser.add_argument("--config", default="", help="config name or YAML of the model and data (default: the run's train_config.yaml)")
    parser.add_argument("--source", choices=("student", "teacher"), default="student", help="network inside an ssl_ext checkpoint")
    parser.add_argument("--split", choices=("train", "val"), default="train", help="images to cluster")
    parser.add_argument("--clusters-per-class", default=None, help="comma-separated multiples of the class count, e.g. 1,4")
    parser.add_argument("--k", default=None, help="comma-separated explicit numbers of clusters, e.g. 100,1000")
    parser.add_argument("--out", default="", help="output folder (default <run dir>/cluster_analysis)")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    # Intermixed: config.X=v overrides may come before or after the options.
    args = parser.parse_intermixed_args(argv)
    try:
        overrides = build_overrides(args)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        overrides.append("--print-config")
    from ssl_ext.cli import main as run_engine

    return run_engine(overrides)


if __name__ == "__main__":
    sys.exit(main())
