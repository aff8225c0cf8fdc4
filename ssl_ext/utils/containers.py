"""Config nodes as plain Python containers, for plugin specs and their PARAMS, and flattened to dotted keys."""
from __future__ import annotations

from typing import Any, Iterator, Tuple

from omegaconf import OmegaConf


def plain(node: Any) -> Any:
    """``node`` with every OmegaConf container turned into dicts/lists (interpolations resolved); other values as is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def flatten(tree: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """``("config.OPTIMIZER.BASE_LR", 0.1)`` pairs of a nested config; lists stay values."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, tree
