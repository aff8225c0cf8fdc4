"""Imports every built-in plugin module so its ``@register_*`` decorator runs.

Walks the plugin folders instead of listing files, so a new plugin is one new
file and one decorator. Heavy optional dependencies (faiss, submitit, ...) are
imported inside functions by the plugins themselves.
"""
import importlib
import pkgutil

PLUGIN_PACKAGES = (
    "ssl_ext.losses",
    "ssl_ext.models",
    "ssl_ext.samplers",
    "ssl_ext.hooks",
    "ssl_ext.data",
    "ssl_ext.engine",
    "ssl_ext.benchmarks",
    "ssl_ext.analysis",
    "ssl_ext.launch",
)


def _import_tree(package_name: str) -> None:
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError as exc:
        if exc.name == package_name:  # that kind of plugin does not exist yet
            return
        raise
    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        importlib.import_module(info.name)


for _package in PLUGIN_PACKAGES:
    _import_tree(_package)
