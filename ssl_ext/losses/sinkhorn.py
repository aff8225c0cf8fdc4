"""Sinkhorn-Knopp balancing, kept under its earlier import path.

The function lives in ``ssl_ext.losses.functional.sinkhorn`` (Cuturi, "Sinkhorn
Distances", NeurIPS 2013, arXiv:1306.0895; SwAV arXiv:2006.09882; MSN arXiv:2204.07141);
``sinkhorn_knopp`` is the same function.
"""
from ssl_ext.losses.functional import sinkhorn as sinkhorn_knopp

__all__ = ["sinkhorn_knopp"]
