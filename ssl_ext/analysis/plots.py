"""Sorted size distributions on log-log axes, with the uniform and fitted power-law references.

The figure of the hidden-uniform-prior paper (arXiv:2210.07277): clusters (or
prototypes) sorted by size, size as a fraction of the samples against rank, both
axes logarithmic, so a uniform distribution is a flat line and a power law
``r^(-tau)`` a straight line of slope ``-tau``.
"""
from __future__ import annotations

import io
from typing import Optional, Sequence, Tuple

import numpy as np

from ssl_ext.analysis.power_law import power_law_distribution, sort_descending
from ssl_ext.utils.io import atomic_write_bytes

# (label, sizes or masses, dashed?) — sizes are normalized and sorted here.
Curve = Tuple[str, Sequence[float], bool]


def sorted_fractions(values) -> np.ndarray:
    sorted_values = sort_descending(values)
    return sorted_values / sorted_values.sum()


def plot_sorted_distributions(
    curves: Sequence[Curve],
    path: str,
    title: str,
    fitted_tau: Optional[float] = None,
    ylabel: str = "fraction of samples",
) -> str:
    """Draw each curve's sorted fractions against rank, plus uniform (and the fitted power law) for the first.

    Empty clusters (fraction 0) cannot sit on a log axis; they are left out of the
    curve and counted in its legend entry. The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_sorted_distributions: no curves to draw")
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    reference_k = len(curves[0][1])
    for label, values, dashed in curves:
        fractions = sorted_fractions(values)
        ranks = np.arange(1, fractions.size + 1)
        empty = int((fractions == 0).sum())
        name = f"{label} ({empty} empty)" if empty else label
        ax.plot(ranks[fractions > 0], fractions[fractions > 0], "--" if dashed else "-", marker=".", markersize=3,
                linewidth=1.2, label=name)
    ranks = np.arange(1, reference_k + 1)
    ax.plot(ranks, np.full(reference_k, 1.0 / reference_k), ":", color="black", linewidth=1.0, label="uniform")
    if fitted_tau is not None and np.isfinite(fitted_tau):
        ax.plot(ranks, power_law_distribution(reference_k, float(fitted_tau)), "-.", color="gray", linewidth=1.0,
                label=f"power law fit, tau={fitted_tau:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank (sorted by size)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
