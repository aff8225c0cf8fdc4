"""Argument checks shared by the model plugins.

Every check raises ``ValueError`` naming the argument, the value and what is
accepted, so a typo in a YAML ``PARAMS`` block is caught at build time with a
message the user can act on.
"""
from __future__ import annotations

from typing import Any, Iterable, List, Sequence


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def probability(name: str, value: Any, *, allow_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (0.0 <= value and upper_ok):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def positive_int_list(name: str, value: Any, *, allow_empty: bool = False) -> List[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of positive integers, got {value!r}")
    items = list(value)
    if not items and not allow_empty:
        raise ValueError(f"{name} must contain at least one width, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must be a list of positive integers, got {value!r}")
    return items


def one_of(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_layer_names(owner: str, names: Any, valid: Sequence[str]) -> List[str]:
    """Validate the ``names`` argument of a trunk's ``extract_layers``."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"{owner}.extract_layers needs at least one layer name; valid names: {list(valid)}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"{owner}.extract_layers: unknown layer name(s) {unknown}; valid names: {list(valid)}")
    return names
