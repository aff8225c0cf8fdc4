"""The dataset catalog: dataset names -> paths per split (like VISSL's dataset_catalog.json).

Format (JSON or YAML; keys starting with ``_`` are comments)::

    my_inat:                     # the name used in config.DATA.TRAIN.DATASET_NAMES
      train: /data/inat/train    # one path ...
      val: [/data/inat/val_images.npy, /data/inat/val_labels.npy]   # ... or several (disk_filelist)
      class_groups: {head_min: 100, tail_max: 20}   # optional: head > 100 train images, tail < 20

The built-in entries live in ``configs_yaml/datasets/catalog.json``. A user adds or
overrides entries with a file of their own, named by ``config.DATA.DATASET_CATALOG``
(``add_catalog_file``). ``~`` and ``$VARS`` in paths are expanded.

Data sources call ``resolve_paths``: an explicit ``config.DATA.<SPLIT>.DATA_PATHS``
entry wins, else the catalog entry of ``dataset_name``; ``ensure_exists`` then
fails before training starts, naming the config key (or catalog entry) and the path.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from registry.core import closest_match

Catalog = Dict[str, Dict[str, List[str]]]

_user_files: List[str] = []


class UnknownDatasetError(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def builtin_catalog_file() -> Path:
    from ssl_ext.config.paths import config_root

    return config_root() / "datasets" / "catalog.json"


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(str(path)))


def load_catalog_file(path: str) -> Catalog:
    """Parse and check one catalog file; errors name the file and the bad entry."""
    path = _expand(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Dataset catalog {path!r} (config.DATA.DATASET_CATALOG) does not exist.")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"Dataset catalog {path!r} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"Dataset catalog {path!r} must map dataset names to {{split: path}}, got {type(raw).__name__}.")
    catalog: Catalog = {}
    for name, splits in raw.items():
        if str(name).startswith("_"):
            continue
        if not isinstance(splits, dict) or not splits:
            raise ValueError(f"Dataset catalog {path!r}: entry {name!r} must map splits (train/val) to paths, got {splits!r}.")
        entry = {}
        for split, paths in splits.items():
            if split == CLASS_GROUPS_KEY:  # evaluation thresholds, read by class_group_thresholds
                _check_class_groups(path, name, paths)
                continue
            paths = [paths] if isinstance(paths, str) else paths
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
                raise ValueError(
                    f"Dataset catalog {path!r}: {name}.{split} must be a path or a list of paths, got {splits[split]!r}."
                )
            entry[str(split).lower()] = [_expand(p) for p in paths]
        catalog[str(name)] = entry
    return catalog


CLASS_GROUPS_KEY = "class_groups"


def _check_class_groups(path: str, name: str, value: object) -> None:
    ok = isinstance(value, dict) and set(value) == {"head_min", "tail_max"} and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()
    )
    if not ok or value["tail_max"] > value["head_min"] + 1:
        raise ValueError(
            f"Dataset catalog {path!r}: {name}.{CLASS_GROUPS_KEY} must be {{head_min: int, tail_max: int}} with "
            f"0 <= tail_max <= head_min + 1, got {value!r}."
        )


def class_group_thresholds(dataset_name: str) -> Optional[Tuple[int, int]]:
    """(head_min, tail_max) of ``dataset_name``'s ``class_groups`` in the catalog (later files win), or None.

    One set per dataset, so the demo, the study and every config that does not set
    ``LONG_TAIL.HEAD_MIN``/``TAIL_MAX`` split head/medium/tail the same way (ssl_ext.data.long_tail).
    """
    found = None
    for path in [str(builtin_catalog_file()), *_user_files]:
        load_catalog_file(path)  # validates, naming the file
        expanded = _expand(path)
        with open(expanded, encoding="utf-8") as f:
            raw = json.load(f) if expanded.endswith(".json") else yaml.safe_load(f)
        groups = ((raw or {}).get(dataset_name) or {}).get(CLASS_GROUPS_KEY) if isinstance(raw, dict) else None
        if groups:
            found = (int(groups["head_min"]), int(groups["tail_max"]))
    return found


def add_catalog_file(path: str) -> None:
    """Use the entries of ``path`` (YAML/JSON) too; later files override earlier ones and the built-ins."""
    if not path:
        return
    load_catalog_file(path)  # fail now, naming the file, rather than at first look-up
    path = _expand(path)
    if path not in _user_files:
        _user_files.append(path)


def clear_user_catalogs() -> None:
    _user_files.clear()


def catalog() -> Catalog:
    """The merged catalog: built-in entries, then every added file in order."""
    merged = dict(load_catalog_file(str(builtin_catalog_file())))
    for path in _user_files:
        merged.update(load_catalog_file(path))
    return merged


def catalog_paths(dataset_name: str, split: str) -> List[str]:
    """The paths of ``dataset_name``'s ``split``; an unknown name fails listing the known ones."""
    entries = catalog()
    if dataset_name not in entries:
        guess = closest_match(dataset_name, entries)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise UnknownDatasetError(
            f"Dataset {dataset_name!r} (config.DATA.{split.upper()}.DATASET_NAMES) is not in the dataset catalog.{hint} "
            f"Known: {', '.join(sorted(entries)) or '(none)'}. Add it with a catalog file named by config.DATA.DATASET_CATALOG."
        )
    entry = entries[dataset_name]
    if split not in entry:
        raise UnknownDatasetError(f"Dataset catalog entry {dataset_name!r} has no {split!r} split (it has {sorted(entry)}).")
    return list(entry[split])


def resolve_paths(split: str, data_path: str, dataset_name: str) -> Tuple[List[str], str]:
    """Paths for a source and where they came from (for error messages); ``[]`` when neither is set."""
    if data_path:
        return [_expand(data_path)], f"config.DATA.{split.upper()}.DATA_PATHS"
    if dataset_name:
        return catalog_paths(dataset_name, split), f"dataset catalog entry {dataset_name!r} ({split})"
    return [], ""


def ensure_exists(owner: str, path: str, origin: str, what: str = "path") -> str:
    """Return ``path`` or fail, naming the config key / catalog entry it came from."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{owner}: {what} {path!r} from {origin or 'the source defaults'} does not exist. "
            "Fix the path (config.DATA.<TRAIN|VAL>.DATA_PATHS, DATASET_NAMES or the catalog entry) before training."
        )
    return path


def no_path_error(owner: str, split: str, example: Optional[str] = None) -> ValueError:
    hint = f" (e.g. {example})" if example else ""
    return ValueError(
        f"{owner}: no data path for split {split!r}. Set config.DATA.{split.upper()}.DATA_PATHS=[<path>]{hint} or "
        f"config.DATA.{split.upper()}.DATASET_NAMES=[<catalog name>]."
    )
