"""The command-line tools, installed with the package: ``ssl-ext-run <subcommand> [args]``.

Each subcommand is a function of its module that takes ``argv`` and returns the exit status.
The repository's ``tools/<module>.py`` scripts run the same code, so
``python tools/prepare_cifar100.py ...`` and ``ssl-ext-run prepare-cifar100 ...`` are one command.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, List, Tuple

# subcommand -> ("module:function" taking argv and returning the exit status, one-line description)
SUBCOMMANDS: Dict[str, Tuple[str, str]] = {
    "prepare-imagenet": ("ssl_ext.tools.prepare_imagenet:command", "ImageNet-1k (or any ImageFolder layout) -> VISSL filelists"),
    "prepare-inaturalist18": ("ssl_ext.tools.prepare_inaturalist18:command", "iNaturalist 2018 COCO-style JSON -> VISSL filelists"),
    "prepare-places205": ("ssl_ext.tools.prepare_places205:command", "Places205 list files -> VISSL filelists"),
    "prepare-cifar100": ("ssl_ext.tools.prepare_cifar100:command", "CIFAR-100 python pickles -> PNG files + VISSL filelists"),
    "prepare-clevr": ("ssl_ext.tools.prepare_clevr:command", "CLEVR scene JSON -> VTAB CLEVR/Count and CLEVR/Dist filelists"),
    "prepare-kitti": ("ssl_ext.tools.prepare_kitti:command", "KITTI object labels -> VTAB KITTI/Dist filelists"),
    "benchmark-suite": ("ssl_ext.tools.benchmark_suite:main", "run a list of benchmarks on one checkpoint, one table"),
    "cluster-analysis": ("ssl_ext.tools.cluster_analysis:main", "is a checkpoint's feature space split into equal-size clusters?"),
    "reproduce-hidden-prior": ("ssl_ext.tools.reproduce_hidden_prior:main", "the hidden-uniform-prior study (arXiv:2210.07277) end to end"),
    "demo": ("ssl_ext.tools.demo:main", "pretraining vs its floors, then MSN vs PMSN on long-tailed Fashion-MNIST"),
}


def subcommand_listing() -> str:
    return "\n".join(f"  {name:24s}{description}" for name, (_, description) in SUBCOMMANDS.items())


def run_subcommand(name: str, argv: List[str]) -> int:
    """Run ``ssl-ext-run <name> <argv...>``; ``name`` must be a key of :data:`SUBCOMMANDS`."""
    module_name, function = SUBCOMMANDS[name][0].split(":")
    entry = getattr(importlib.import_module(module_name), function)
    program = sys.argv[0]
    sys.argv[0] = f"ssl-ext-run {name}"  # argparse's default prog, so usage lines name the subcommand
    try:
        return int(entry(list(argv)) or 0)
    finally:
        sys.argv[0] = program
