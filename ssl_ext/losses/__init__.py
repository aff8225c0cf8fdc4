"""Losses: one registered loss per file, the mathematics in ``ssl_ext.losses.functional``.

Importing this package (which importing any loss module, or ``import ssl_ext``, does)
imports every loss module in it, so every ssl_ext loss is registered in ssl_ext's
``registry.LOSSES`` and in Classy Vision's loss registry: a Classy Vision or VISSL
trainer can then build them by name. The folder is walked rather than listed, so a new
loss is still one new file; modules whose name starts with ``_`` are helpers.
"""
import importlib
import pkgutil


def _import_every_loss_module() -> None:
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


_import_every_loss_module()
