"""Config nodes as plain Python containers, for plugin specs and their PARAMS."""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def plain(node: Any) -> Any:
    """``node`` with every OmegaConf container turned into dicts/lists (interpolations resolved); other values as is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
