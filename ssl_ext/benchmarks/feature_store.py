"""On-disk cache of extracted features, read by the kNN, fast linear and low-shot engines.

Layout (all through iopath, each file written atomically)::

    <features dir>/meta.json                      what produced the features (see ``features_fingerprint``)
    <features dir>/<split>/<layer>_features.npy   float32 (N, D), rows in dataset order
    <features dir>/<split>/<layer>_labels.npy     int64 (N,)
    <features dir>/<split>/<layer>_ids.npy        int64 (N,), the dataset index of each row

``<split>`` is ``train`` or ``val`` (the lower-case DATA section name). The ids
make the rows traceable to images and let a reader check that rows are complete
and ordered (``ids == arange(N)`` after a sharded extraction).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ssl_ext.utils.io import atomic_write_bytes, atomic_write_text, path_manager, read_text

META_FILE = "meta.json"


@dataclass
class FeatureSet:
    """Features of one split and one layer."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        n = self.features.shape[0]
        if self.labels.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(
                f"FeatureSet: features have {n} rows but labels have shape {self.labels.shape} and ids {self.ids.shape}"
            )


def features_dir(cfg: DictConfig) -> str:
    """``BENCHMARK.FEATURES.DIR``, or ``<CHECKPOINT.DIR>/features`` when empty."""
    explicit = str(cfg.config.BENCHMARK.FEATURES.DIR or "")
    return explicit or os.path.join(str(cfg.config.CHECKPOINT.DIR), "features")


def split_dir(root: str, split: str) -> str:
    return os.path.join(root, split.lower())


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_npy(path: str) -> np.ndarray:
    with path_manager.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def save_feature_set(root: str, split: str, layer: str, data: FeatureSet) -> None:
    folder = split_dir(root, split)
    atomic_write_bytes(os.path.join(folder, f"{layer}_features.npy"), _npy_bytes(data.features.astype(np.float32)))
    atomic_write_bytes(os.path.join(folder, f"{layer}_labels.npy"), _npy_bytes(data.labels.astype(np.int64)))
    atomic_write_bytes(os.path.join(folder, f"{layer}_ids.npy"), _npy_bytes(data.ids.astype(np.int64)))


def load_feature_set(root: str, split: str, layer: str) -> FeatureSet:
    folder = split_dir(root, split)
    path = os.path.join(folder, f"{layer}_features.npy")
    if not path_manager.exists(path):
        raise FileNotFoundError(
            f"No cached features {path}: run the extract_features engine first (config.ENGINE_NAME=extract_features) "
            f"with the same config, or point config.BENCHMARK.FEATURES.DIR at a folder holding {split.lower()}/{layer}_*.npy."
        )
    return FeatureSet(
        features=_read_npy(path),
        labels=_read_npy(os.path.join(folder, f"{layer}_labels.npy")),
        ids=_read_npy(os.path.join(folder, f"{layer}_ids.npy")),
    )


def save_meta(root: str, meta: Dict[str, Any]) -> None:
    atomic_write_text(os.path.join(root, META_FILE), json.dumps(meta, indent=2, sort_keys=True))


def load_meta(root: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(root, META_FILE)
    if not path_manager.exists(path):
        return None
    try:
        return json.loads(read_text(path))
    except (OSError, ValueError):
        return None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _weights_identity(weights_cfg: Any, seed: int) -> Dict[str, Any]:
    from ssl_ext.engine.weights import resolve_params_file, uses_random_init

    if uses_random_init(weights_cfg):  # the trunk is initialised from SEED_VALUE alone
        return {"random_init": True, "seed": int(seed)}
    params_file = resolve_params_file(str(weights_cfg.PARAMS_FILE or ""))
    identity: Dict[str, Any] = {"params_file": params_file, "source": str(weights_cfg.SOURCE)}
    if params_file and path_manager.exists(params_file) and "://" not in params_file:
        stat = os.stat(params_file)
        identity.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    return identity


def features_fingerprint(cfg: DictConfig, layers: List[str], splits: List[str]) -> str:
    """Hash of everything that changes the features: trunk, weights file, data of each split, transform, layers."""
    c = cfg.config
    data = {}
    for split in splits:
        section = c.DATA[split]
        data[split] = {
            key: _plain(section.get(key))
            for key in ("DATA_SOURCES", "DATASET_NAMES", "DATA_PATHS", "SOURCE_PARAMS", "LONG_TAIL")
        }
    identity = {
        "trunk": _plain(c.MODEL.TRUNK),
        "weights": _weights_identity(c.MODEL.WEIGHTS_INIT, int(c.SEED_VALUE)),
        "data": data,
        "catalog": str(c.DATA.DATASET_CATALOG),
        "transform": _plain(c.DATA.VAL.TRANSFORM),
        "layers": list(layers),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def load_train_val(cfg: DictConfig, features: Dict[str, Any], layer: str):
    """(train FeatureSet, val FeatureSet, number of classes, class groups or None) of one cached layer.

    ``features`` is the summary returned by ``ensure_features`` (its meta).
    """
    from ssl_ext.benchmarks.metrics import class_groups_for

    root = features["features_dir"]
    train = load_feature_set(root, "train", layer)
    val = load_feature_set(root, "val", layer)
    num_classes = max(int(features.get("num_classes") or 0), int(train.labels.max()) + 1, int(val.labels.max()) + 1)
    groups = class_groups_for(cfg, train.labels, num_classes, known=features.get("class_groups"))
    return train, val, num_classes, groups
