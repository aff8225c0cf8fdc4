"""Plugin discovery: built-ins, ``PLUGINS:`` modules and the ``ssl_ext.plugins`` entry points."""
from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import entry_points
from typing import Iterable, List

from registry.errors import RegistryError

ENTRY_POINT_GROUP = "ssl_ext.plugins"
BUILTIN_PLUGIN_MODULE = "ssl_ext.plugins"

logger = logging.getLogger(__name__)
_state = {"builtins": False, "entry_points": False}


def load_plugins(modules: Iterable[str], origin: str = "PLUGINS") -> List[str]:
    """Import each module so that its ``@register_*`` decorators run."""
    loaded = []
    for module in modules or ():
        module = str(module)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(
                f"Could not import plugin module {module!r} listed in {origin}: {exc}. "
                f"Install the package that provides it or fix the module path."
            ) from exc
        loaded.append(module)
    return loaded


def load_entry_point_plugins() -> List[str]:
    """Load every installed package's ``ssl_ext.plugins`` entry point (once per process)."""
    if _state["entry_points"]:
        return []
    _state["entry_points"] = True
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:
            raise RegistryError(
                f"Entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r} failed to load: {exc}"
            ) from exc
        loaded.append(ep.value)
    return loaded


def ensure_builtin_plugins() -> None:
    """Import ssl_ext's built-in plugins and installed entry-point plugins on first use."""
    if _state["builtins"]:
        return
    _state["builtins"] = True
    if BUILTIN_PLUGIN_MODULE not in sys.modules:
        importlib.import_module(BUILTIN_PLUGIN_MODULE)
    load_entry_point_plugins()
