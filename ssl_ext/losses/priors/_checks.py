"""Argument checks shared by the built-in priors."""
from __future__ import annotations


def check_num_prototypes(num_prototypes, prior_name: str) -> int:
    if isinstance(num_prototypes, bool) or not isinstance(num_prototypes, int) or num_prototypes < 1:
        raise ValueError(f"prior {prior_name!r}: num_prototypes must be an integer >= 1, got {num_prototypes!r}")
    return num_prototypes
