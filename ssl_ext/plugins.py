"""Imports every built-in plugin module so its ``@register_*`` decorator runs.

Walks the plugin folders instead of listing files, so a new plugin is one new
file and one decorator. Only folders that hold plugins are walked: the first
registry look-up must not import launchers (SLURM/submitit), experiment drivers
(``ssl_ext/studies``) or anything else a plugin does not need. Heavy optional
dependencies (faiss, submitit, ...) are imported inside functions by the plugins
themselves.
"""
import importlib
import pkgutil

PLUGIN_PACKAGES = (
    "ssl_ext.losses",  # losses and (losses/priors) PMSN priors
    "ssl_ext.models.trunks",
    "ssl_ext.models.heads",
    "ssl_ext.samplers",
    "ssl_ext.hooks",
    "ssl_ext.data.sources",
    "ssl_ext.data.transforms",
    "ssl_ext.engine",  # the train engine and (engine/optimizers) optimizers
    "ssl_ext.benchmarks",  # evaluation engines
    "ssl_ext.analysis",  # the cluster_analysis engine
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
