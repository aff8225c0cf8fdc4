"""``extract_features`` engine: save a frozen trunk's features of the train and val splits.

VISSL's ``extract_features`` engine (Goyal et al. 2021, "VISSL",
https://github.com/facebookresearch/vissl): the trunk of ``MODEL.TRUNK`` with
``MODEL.WEIGHTS_INIT`` runs in eval mode over ``BENCHMARK.FEATURES.SPLITS``,
sharded over the ranks, and rank 0 saves ``<features dir>/<split>/<layer>_{features,
labels,ids}.npy`` (see ``ssl_ext.benchmarks.feature_store``). The kNN, fast linear
and low-shot engines read these files.
"""
from __future__ import annotations

from typing import Any, Dict

from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.benchmarks.extraction import extract_features
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.utils import distributed as du


@register_engine("extract_features")
def extract_features_engine(cfg: DictConfig) -> Dict[str, Any]:
    summary = extract_features(cfg)
    rows = [
        {"split": split, "layer": layer, "images": summary["num_rows"][split], "dim": summary["dims"][layer]}
        for split in summary["splits"]
        for layer in summary["layers"]
    ]
    result = {"engine": "extract_features", "rows": rows, **summary}
    if du.is_primary():
        result["files"] = write_results(output_dir(cfg, "extract_features"), result, "Extracted features")
    return result
