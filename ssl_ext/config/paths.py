"""Where YAML configs live, and the one way a YAML name is turned into a file.

Every reader of a YAML by name -- ``config=<name>`` (compose), ``sweep=<name>`` (the sweep
launcher), ``--plan <name>`` (the hidden-prior study) and the dataset catalog -- goes through
:func:`config_root` and :func:`resolve_yaml`, so they search the same places in the same order.
:func:`config_root` is the only place that knows where the ``configs_yaml`` tree is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

from ssl_ext.config.errors import ConfigError

# Set to a folder holding defaults.yaml (and the pretrain/, benchmark/ ... trees) to use
# a private copy of the configs instead of the ones shipped with ssl_ext.
CONFIGS_ENV = "SSL_EXT_CONFIGS"


# A wheel ships the repository's configs_yaml/ as ssl_ext/_configs (setup.py's package_dir);
# a source checkout, editable installs included, reads configs_yaml/ beside the package.
_PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "_configs"
_SOURCE_CONFIGS = Path(__file__).resolve().parents[2] / "configs_yaml"


def config_root() -> Path:
    """The folder holding ``defaults.yaml`` and the config trees (``$SSL_EXT_CONFIGS`` if set)."""
    override = os.environ.get(CONFIGS_ENV)
    if override:
        return Path(override).expanduser()
    if (_PACKAGED_CONFIGS / "defaults.yaml").is_file():
        return _PACKAGED_CONFIGS
    return _SOURCE_CONFIGS


def yaml_candidates(name: str) -> List[Path]:
    """The files ``name`` may mean, in search order.

    An absolute path means itself; a relative one is looked up under :func:`config_root`
    first, then under the working directory. Each with and without a ``.yaml`` suffix.
    """
    raw = Path(str(name)).expanduser()
    bases = [raw] if raw.is_absolute() else [config_root() / raw, Path.cwd() / raw]
    candidates = []
    for base in bases:
        candidates.append(base)
        if base.suffix not in (".yaml", ".yml"):
            candidates.append(base.with_name(base.name + ".yaml"))
    return candidates


def known_yaml_names(under: str = "") -> List[str]:
    """Names (relative to :func:`config_root`, without ``.yaml``) of the shipped YAML files."""
    root = config_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in (root / under).rglob("*.yaml"))


def resolve_yaml(name: str, what: str = "config") -> Path:
    """The YAML file that ``<what>=<name>`` selects, as an absolute path.

    Raises :class:`ConfigError` naming every path tried and the closest shipped name.
    """
    candidates = yaml_candidates(name)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    from registry.core import closest_match

    guess = closest_match(str(name), known_yaml_names())
    hint = f" Did you mean {what}={guess}?" if guess else ""
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"{what}={name}: no such YAML file (tried {tried}).{hint}")
