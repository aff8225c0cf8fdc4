"""Run-time shims that let VISSL 0.1.6 import on today's torchvision and setuptools.

VISSL 0.1.6 (2021) is pinned to the libraries of its time. Two incompatibilities stop
``import vissl`` today; both are fixed here, in memory, before VISSL is imported, so no
file of the installed package is edited:

* the ``classy_vision`` that VISSL bundles imports ``torchvision.datasets.Kinetics400``
  (``classy_vision/dataset/classy_kinetics400.py``), which torchvision removed in favour
  of ``Kinetics(num_classes="400")``; an alias to ``Kinetics`` is enough, since nothing
  here trains on Kinetics;
* ``vissl.utils.misc`` imports ``pkg_resources``, which setuptools dropped in version 81:
  install ``setuptools<81`` next to VISSL (``tools/setup_vissl.sh`` does).

A third clash is between the two frameworks' loss names: ``import ssl_ext`` registers
ssl_ext's losses in Classy Vision's loss registry, and VISSL registers its own there
when ``vissl.losses`` is imported, refusing any name already taken (``swav_loss`` and
``dino_loss`` exist in both). VISSL's losses are therefore imported here with ssl_ext's
entries set aside, then ssl_ext's are put back wherever VISSL did not take the name.
Under VISSL, ``swav_loss``/``dino_loss`` thus name VISSL's losses; ssl_ext's versions
stay reachable as ``ssl_ext_loss`` with ``NAME: swav_loss``, which builds from
ssl_ext's own registry.

This module imports only ``vissl.losses``, and only inside :func:`apply_vissl_shims`.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import List

_applied = False
shadowed_by_vissl: List[str] = []
logger = logging.getLogger(__name__)


def _import_vissl_losses_beside_ssl_ext() -> None:
    """Import ``vissl.losses`` without clashing with ssl_ext's entries in Classy's loss registry."""
    import classy_vision.losses as classy_losses

    registries = (classy_losses.LOSS_REGISTRY, classy_losses.LOSS_REGISTRY_TB)
    ours = {
        name: (cls, classy_losses.LOSS_REGISTRY_TB.get(name, ""))
        for name, cls in list(classy_losses.LOSS_REGISTRY.items())
        if getattr(cls, "__module__", "").startswith("ssl_ext.")
    }
    for name in ours:
        for table in registries:
            table.pop(name, None)
    try:
        import vissl.losses  # noqa: F401
    finally:
        for name, (cls, traceback_text) in ours.items():
            if name in classy_losses.LOSS_REGISTRY:
                shadowed_by_vissl.append(name)
            else:
                classy_losses.LOSS_REGISTRY[name], classy_losses.LOSS_REGISTRY_TB[name] = cls, traceback_text
    if shadowed_by_vissl:
        logger.info(
            "Classy loss names %s are VISSL's losses in this process; ssl_ext's are used through "
            "ssl_ext_loss {NAME: ...}.", shadowed_by_vissl,
        )


def apply_vissl_shims() -> None:
    """Install the shims (idempotent); raise a clear error when ``pkg_resources`` is missing."""
    global _applied
    if _applied:
        return
    import torchvision.datasets as tv_datasets
    import torchvision.datasets.kinetics as tv_kinetics

    if not hasattr(tv_kinetics, "Kinetics400"):
        tv_kinetics.Kinetics400 = tv_kinetics.Kinetics
    if not hasattr(tv_datasets, "Kinetics400"):
        tv_datasets.Kinetics400 = tv_kinetics.Kinetics
    if importlib.util.find_spec("pkg_resources") is None:
        raise ImportError(
            "VISSL 0.1.6 imports pkg_resources, which setuptools>=81 no longer ships. Install VISSL with "
            "tools/setup_vissl.sh (it puts vissl==0.1.6 and setuptools<81 in .cache/vissl) and put that folder "
            "first on PYTHONPATH."
        )
    _import_vissl_losses_beside_ssl_ext()
    _applied = True
