"""VISSL-style config composition through hydra-core's compose API.

``compose_config(["config=pretrain/simclr_digits", "config.OPTIMIZER.BASE_LR=0.3"])``
merges ``configs_yaml/defaults.yaml``, then the selected YAML (a path under
configs_yaml or an absolute path, with or without ``.yaml``), then the overrides.
The selected YAML is a member of hydra's ``config`` group, so it may have its own
``defaults:`` list (``- /config/launcher/slurm_cpu@_here_``) and ``+additions``
work as in hydra.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import yaml
from omegaconf import DictConfig, OmegaConf

from ssl_ext.config.errors import ConfigError
from ssl_ext.config.paths import config_root, resolve_yaml

CONFIG_GROUP = "config"
# Overrides under these keys go to free-form plugin parameters; hydra would refuse a
# new key there without '+', so they are applied with '++' (add or override).
_FREE_FORM = re.compile(r"(^|\.)([A-Z_]*PARAMS|LOSS_SCHEDULES)(\.|$)")


def resolve_config_path(value: str) -> Path:
    """Find the YAML named by ``config=<value>``; raise a ConfigError naming what was tried."""
    return resolve_yaml(value, what="config")


def _search_dir(user_yaml: Optional[Path]) -> Tuple[Path, Optional[str]]:
    """A directory hydra can read: defaults.yaml plus a ``config`` group holding configs_yaml's trees.

    Hydra config groups are directories, so the group is assembled from symlinks
    (one per configs_yaml entry, plus the folder of a user's YAML outside it).
    """
    configs = config_root()
    key = hashlib.sha1(f"{configs}|{user_yaml.parent if user_yaml else ''}".encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"ssl_ext_hydra_{os.getuid()}_{key}"
    group = root / CONFIG_GROUP
    group.mkdir(parents=True, exist_ok=True)

    def link(src: Path, dst: Path) -> None:
        if dst.is_symlink() and os.readlink(dst) == str(src):
            return
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(src)
        os.replace(tmp, dst)

    link(configs / "defaults.yaml", root / "defaults.yaml")
    for entry in configs.iterdir():
        if entry.name != "defaults.yaml":
            link(entry, group / entry.name)
    option = None
    if user_yaml is not None:
        try:
            option = str(user_yaml.relative_to(configs.resolve()).with_suffix(""))
        except ValueError:
            link(user_yaml.parent, group / "_user")
            option = f"_user/{user_yaml.stem}"
    return root, option


def split_config_arg(overrides: Iterable[str]) -> Tuple[Optional[str], List[str]]:
    config_value, rest = None, []
    for item in overrides:
        if item.startswith("config=") and config_value is None:
            config_value = item[len("config="):]
        else:
            rest.append(item)
    return config_value, rest


def _hydra_override(item: str) -> str:
    if item.startswith(("+", "~")) or "=" not in item:
        return item
    key = item.split("=", 1)[0]
    if _FREE_FORM.search(key):
        return "++" + item
    return item


def compose_config(overrides: Iterable[str] = ()) -> DictConfig:
    """Compose defaults + selected YAML + overrides; validate; return the ``config`` node's parent."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    config_value, rest = split_config_arg(list(overrides))
    user_yaml = resolve_config_path(config_value) if config_value else None
    if user_yaml is not None:
        check_yaml_shape(user_yaml)
    root, option = _search_dir(user_yaml)
    hydra_overrides = ([f"+{CONFIG_GROUP}@_global_={option}"] if option else []) + [_hydra_override(o) for o in rest]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(root), version_base=None):
            cfg = compose(config_name="defaults", overrides=hydra_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain_hydra_error(exc, rest, user_yaml)) from None
    except yaml.YAMLError as exc:
        # The message names the file, line and column; keep it on one line for the command line.
        raise ConfigError(f"Not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    from ssl_ext.config.validate import validate_config

    source = str(user_yaml) if user_yaml else "defaults.yaml"
    try:
        validate_config(cfg, source=source, overrides=rest)
    except OmegaConfBaseException as exc:  # e.g. a ${...} interpolation pointing nowhere
        key = getattr(exc, "full_key", None) or "?"
        message = (str(getattr(exc, "msg", None) or exc).splitlines() or [type(exc).__name__])[0]
        where = f"{source} or the overrides {rest}" if rest else source
        raise ConfigError(f"Config key {key!r} (in {where}) cannot be resolved: {message}") from None
    return cfg


def check_yaml_shape(path: Path) -> None:
    """A selected YAML must be a mapping with a ``config:`` mapping (VISSL layout) and/or a ``defaults:`` list."""
    try:
        with open(path, encoding="utf-8") as stream:  # a stream, so the YAML error names the file
            content = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Not valid YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config={path}: cannot read it as a text file ({exc}).") from None
    layout = "a mapping with a top-level 'config:' key (VISSL layout), e.g. 'config: {SEED_VALUE: 1}'"
    if content is None:
        raise ConfigError(f"config={path} is empty; it must be {layout}.")
    if not isinstance(content, dict):
        raise ConfigError(f"config={path} holds a {type(content).__name__}; it must be {layout}.")
    if "config" in content and not isinstance(content["config"], (dict, type(None))):
        raise ConfigError(f"config={path}: 'config:' holds a {type(content['config']).__name__}; it must be a mapping of keys.")
    if "defaults" in content and not isinstance(content["defaults"], list):
        raise ConfigError(f"config={path}: 'defaults:' must be a list of other YAMLs to merge first.")


def _explain_hydra_error(exc: Exception, overrides: List[str], user_yaml: Optional[Path]) -> str:
    message = str(exc).strip()
    match = re.search(r"Could not override '([^']+)'", message) or re.search(r"Key '([^']+)' is not in struct", message)
    if match:
        from ssl_ext.config.validate import suggest_key

        key = match.group(1)
        return (
            f"Override {key!r}: no such config key.{suggest_key(key)} "
            f"To add a new key on purpose, write +{key}=<value>."
        )
    where = f" while composing {user_yaml}" if user_yaml else ""
    # Hydra appends its search path, many lines long; the first line says what is wrong.
    return f"Could not compose the config{where} with overrides {overrides}: {message.splitlines()[0]}"


def save_config(cfg: DictConfig, path: str) -> None:
    """Write the composed config (the file ``config=<path>`` reproduces the run from)."""
    from ssl_ext.utils.io import atomic_write_text

    atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))
