"""A cluster prior read from a histogram file, e.g. a dataset's class frequencies.

PMSN (Assran et al., arXiv:2210.07277) matches the mean prototype usage to a prior;
when the class-frequency profile of the data is known (iNaturalist's, a long-tailed
subset's), this prior uses that profile instead of a fitted power law.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import torch

from registry import register_prior
from ssl_ext.losses.priors._checks import check_num_prototypes

SUFFIXES = (".npy", ".json", ".txt")


def _read_histogram(path: str) -> np.ndarray:
    from ssl_ext.utils.io import path_manager

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"prior 'from_file': {path!r} has suffix {suffix!r}; use one of {', '.join(SUFFIXES)}")
    if not path_manager.exists(path):
        raise ValueError(f"prior 'from_file': histogram file {path!r} does not exist; set PARAMS.path to an existing file")
    try:
        if suffix == ".npy":
            with path_manager.open(path, "rb") as f:
                values = np.load(io.BytesIO(f.read()), allow_pickle=False)
        elif suffix == ".json":
            with path_manager.open(path, "r") as f:
                data = json.load(f)
            values = list(data.values()) if isinstance(data, dict) else data
        else:
            with path_manager.open(path, "r") as f:
                values = np.loadtxt(f, ndmin=1)
        values = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(
            f"prior 'from_file': cannot read a histogram of numbers from {path!r} ({exc}); expected a 1-D .npy array, "
            f"a JSON list (or name -> count mapping) or whitespace-separated numbers in .txt"
        ) from exc
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"prior 'from_file': {path!r} must hold a non-empty 1-D histogram, got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"prior 'from_file': {path!r} must hold finite counts >= 0 with a positive total")
    return values


@register_prior("from_file")
def histogram_file_prior(num_prototypes: int, path: str = "", log_space: bool = True) -> torch.Tensor:
    """Prior from a histogram file (.npy, .json or .txt), sorted descending and resampled to ``K`` bins.

    Empty bins are dropped (a class without images makes no cluster, and KL(p̄ ‖ π)
    needs π > 0). The sorted frequencies are read as a rank-frequency curve on
    [0, 1] and sampled at ``K`` evenly spaced ranks by linear interpolation; with
    ``log_space`` (default) the interpolation is on log-frequencies, which keeps
    exponential and power-law profiles straight between bins and every value
    positive. With as many bins as prototypes the histogram is used as is.
    """
    k = check_num_prototypes(num_prototypes, "from_file")
    if not isinstance(path, str) or not path:
        raise ValueError("prior 'from_file': set PARAMS.path to a .npy, .json or .txt histogram file")
    if not isinstance(log_space, bool):
        raise ValueError(f"prior 'from_file': log_space must be true or false, got {log_space!r}")
    counts = _read_histogram(path)
    counts = np.sort(counts[counts > 0])[::-1]
    if counts.size != k:
        old_ranks, new_ranks = np.linspace(0.0, 1.0, counts.size), np.linspace(0.0, 1.0, k)
        if log_space:
            counts = np.exp(np.interp(new_ranks, old_ranks, np.log(counts)))
        else:
            counts = np.interp(new_ranks, old_ranks, counts)
    prior = torch.as_tensor(counts.copy(), dtype=torch.float64)
    return prior / prior.sum()
