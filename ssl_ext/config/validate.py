"""Config validation against configs_yaml/defaults.yaml, before anything heavy starts.

The defaults file is the schema: a key it does not have is a typo (the error
names the closest valid key), a value of another type than the default's is an
error naming key, value and expected type, and ``???`` marks a value a run must
set. ``PARAMS`` mappings are checked against the named plugin's signature.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from ssl_ext.config.errors import ConfigError

# Free-form mappings: their keys belong to a plugin (checked against its signature) or to the user.
FREE_FORM_KEYS = {"PARAMS", "SOURCE_PARAMS", "LOSS_SCHEDULES"}
# Lists of plugin specs, and the registry each item's NAME is looked up in.
PLUGIN_LISTS = {"config.MODEL.HEADS": "head", "config.MODEL.STUDENT_ONLY_HEADS": "head", "config.HOOKS.EXTRA": "hook", "config.LOSS.REGULARIZERS": "loss"}
# Sections with NAME + PARAMS, and the registry each NAME belongs to.
PLUGIN_SECTIONS = {
    "config.MODEL.TRUNK": "trunk",
    "config.LOSS": "loss",
    "config.OPTIMIZER": "optimizer",
    "config.DATA.TRAIN.TRANSFORM": "transform",
    "config.DATA.VAL.TRANSFORM": "transform",
    "config.DATA.TRAIN.SAMPLER": "sampler",
}


def schema() -> DictConfig:
    """defaults.yaml, re-read when the file changes (a long-lived process must not validate against a stale copy)."""
    from ssl_ext.config.paths import config_root

    path = config_root() / "defaults.yaml"
    return _load_schema(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _load_schema(path: str, mtime_ns: int) -> DictConfig:
    return OmegaConf.load(path)


def _all_keys(node: Any, prefix: str = "") -> List[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}.{k}" if prefix else str(k)
            keys.append(path)
            if str(k) not in FREE_FORM_KEYS:
                keys += _all_keys(node._get_node(k), path)
    return keys


def suggest_key(key: str) -> str:
    from registry.core import closest_match

    known = _all_keys(schema())
    last = key.split(".")[-1]
    guess = closest_match(key, known) or next((k for k in known if k.split(".")[-1] == last), None)
    if guess is None:
        leaf_guess = closest_match(last, sorted({k.split(".")[-1] for k in known}))
        guess = next((k for k in known if leaf_guess and k.endswith("." + leaf_guess)), None)
    return f" Did you mean {guess!r}?" if guess else ""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    return type(value).__name__


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    expected, got = _type_name(default), _type_name(value)
    return expected == got or (expected == "float" and got == "int")


def _origin_finder(source: str, overrides: Sequence[str]) -> Callable[[str], str]:
    """Where a key's value came from: the command-line override that set it, else the YAML."""
    parsed = [(str(o).lstrip("+~").split("=", 1)[0], str(o)) for o in overrides]

    def origin(full: str) -> str:
        for key, raw in reversed(parsed):
            if key == full or key.startswith(full + ".") or full.startswith((key + ".", key + "[")):
                return f"command-line override {raw!r}"
        return source

    return origin


def _check_node(node: DictConfig, ref: DictConfig, path: str, origin: Callable[[str], str]) -> None:
    for key in node.keys():
        key = str(key)
        full = f"{path}.{key}"
        if key not in ref:
            raise ConfigError(f"Unknown config key {full!r} (in {origin(full)}).{suggest_key(full)}")
        if OmegaConf.is_missing(ref, key):
            continue
        value, default = node._get_node(key), ref._get_node(key)
        value_py = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value._value()
        default_py = (
            OmegaConf.to_container(default, resolve=True) if isinstance(default, (DictConfig, ListConfig)) else default._value()
        )
        if not _compatible(default_py, value_py):
            raise ConfigError(
                f"Config key {full!r} = {value_py!r} (in {origin(full)}) has type {_type_name(value_py)}; "
                f"expected {_type_name(default_py)} like the default {default_py!r}."
            )
        if key in FREE_FORM_KEYS:
            continue
        if isinstance(value, DictConfig) and isinstance(default, DictConfig):
            _check_node(value, default, full, origin)


def _find_missing(node: Any, path: str) -> Optional[str]:
    """Full key of the first ``???`` value under ``node``, plugin PARAMS and lists included."""
    if isinstance(node, DictConfig):
        children = [(f"{path}.{key}", key) for key in node.keys()]
    elif isinstance(node, ListConfig):
        children = [(f"{path}[{i}]", i) for i in range(len(node))]
    else:
        return None
    for full, key in children:
        if OmegaConf.is_missing(node, key):
            return full
        found = _find_missing(node._get_node(key), full)
        if found is not None:
            return found
    return None


def _check_plugin(kind: str, spec: Any, where: str) -> None:
    import registry
    from registry.core import RegistryError, spec_name_and_params

    try:
        name, params = spec_name_and_params(spec)
        reg = registry.ALL_REGISTRIES[kind]
        reg.check_params(name, params)  # the registry knows which names its build context sets
    except RegistryError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _select(cfg: DictConfig, path: str) -> Optional[Any]:
    return OmegaConf.select(cfg, path, default=None)


def validate_plugins(cfg: DictConfig) -> None:
    """Check every named plugin exists and its PARAMS match its signature."""
    from registry import RegistryError, load_plugins

    try:
        load_plugins(list(_select(cfg, "config.PLUGINS") or []), origin="config.PLUGINS")
    except RegistryError as exc:  # a module that cannot be imported, or registers a taken name
        raise ConfigError(str(exc)) from exc
    for path, kind in PLUGIN_SECTIONS.items():
        spec = _select(cfg, path)
        if spec is not None and spec.get("NAME"):
            _check_plugin(kind, spec, path)
    for path, kind in PLUGIN_LISTS.items():
        for i, spec in enumerate(_select(cfg, path) or []):
            if not isinstance(spec, DictConfig) or "NAME" not in spec:
                raise ConfigError(f"{path}[{i}] must be a mapping with NAME and PARAMS, got {spec!r}.")
            _check_plugin(kind, spec, f"{path}[{i}]")
    # Every source of a split receives the split's SOURCE_PARAMS, so each source's signature must accept them.
    for split, split_cfg in (_select(cfg, "config.DATA") or {}).items():
        if not isinstance(split_cfg, DictConfig) or "DATA_SOURCES" not in split_cfg:
            continue
        source_params = split_cfg.get("SOURCE_PARAMS") or {}
        for i, source in enumerate(split_cfg.DATA_SOURCES or []):
            _check_plugin(
                "data source", {"NAME": source, "PARAMS": source_params},
                f"config.DATA.{split}.DATA_SOURCES[{i}] with config.DATA.{split}.SOURCE_PARAMS",
            )
    import registry

    engine = _select(cfg, "config.ENGINE_NAME")
    try:
        registry.ENGINES.get(engine)
    except Exception as exc:
        raise ConfigError(f"config.ENGINE_NAME: {exc}") from None


def validate_config(cfg: DictConfig, source: str = "config", check_plugins: bool = True, overrides: Sequence[str] = ()) -> None:
    """Raise ConfigError for unknown keys, wrong types, missing values and bad plugin params.

    ``source`` (the YAML) and ``overrides`` (the command line) let an error say where a bad value came from.
    """
    if "config" not in cfg:
        raise ConfigError(f"{source}: the YAML must have a top-level 'config:' key (VISSL layout).")
    extra = [str(k) for k in cfg.keys() if str(k) != "config"]
    if extra:
        raise ConfigError(f"{source}: unexpected top-level keys {extra}; put everything under 'config:'.")
    origin = _origin_finder(source, overrides)
    missing = _find_missing(cfg.config, "config")
    if missing is not None:
        raise ConfigError(
            f"Config key {missing!r} is required but has no value ('???' in {origin(missing)}): set {missing}=<value>."
        )
    _check_node(cfg.config, schema().config, "config", origin)
    from ssl_ext.config.values import check_plugin_values, check_values

    check_values(cfg, schema(), origin)
    if check_plugins:
        validate_plugins(cfg)
        check_plugin_values(cfg)
