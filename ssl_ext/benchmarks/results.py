"""``results.json`` and ``results.md`` writers shared by every evaluation engine.

An engine's result is a dict with a ``rows`` list (one flat dict per evaluated
setting: layer, method, top1, top5, head/medium/tail, ...) plus free-form
details. ``results.json`` holds all of it; ``results.md`` is a markdown table of
the rows, so results from different runs can be pasted side by side.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Sequence

from omegaconf import DictConfig

from ssl_ext.utils.io import atomic_write_text

# Column order of the markdown table; other keys follow in first-seen order.
PREFERRED_COLUMNS = (
    "benchmark", "model", "engine", "layer", "method", "subset", "k", "lr", "weight_decay",
    "top1", "top5", "head", "medium", "tail", "draws", "epochs", "seconds",
)


def output_dir(cfg: DictConfig, engine_name: str) -> str:
    """``BENCHMARK.OUTPUT_DIR`` or ``<CHECKPOINT.DIR>/<engine name>``."""
    explicit = str(cfg.config.BENCHMARK.OUTPUT_DIR or "")
    return explicit or os.path.join(str(cfg.config.CHECKPOINT.DIR), engine_name)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    return str(value)


STD_SUFFIX = "_std"


def table_columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Columns in preferred order; ``X_std`` columns are folded into ``X`` (shown as mean ± std)."""
    seen: List[str] = []
    for row in rows:
        for key in row:
            folded = key.endswith(STD_SUFFIX) and key[: -len(STD_SUFFIX)] in row
            if key not in seen and not folded:
                seen.append(key)
    ordered = [c for c in PREFERRED_COLUMNS if c in seen]
    return ordered + [c for c in seen if c not in ordered]


def _cell(row: Dict[str, Any], column: str) -> str:
    if column not in row:
        return ""
    std = row.get(column + STD_SUFFIX)
    if std is not None:
        return f"{_format(row[column])} ± {_format(std)}"
    return _format(row[column])


def markdown_table(rows: Sequence[Dict[str, Any]], title: str = "") -> str:
    """A GitHub-flavoured markdown table of ``rows`` (missing cells are blank)."""
    columns = table_columns(rows)
    lines = [f"## {title}", ""] if title else []
    if not rows:
        return "\n".join(lines + ["(no results)", ""])
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def json_safe(value: Any) -> Any:
    """``value`` with NaN -> None, numpy/torch scalars -> Python numbers, tuples -> lists (for json.dumps)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_safe(value.item())
    return value


_json_safe = json_safe  # the earlier private name, still imported by ssl_ext.analysis


def write_results(folder: str, result: Dict[str, Any], title: str) -> Dict[str, str]:
    """Write ``results.json`` (everything) and ``results.md`` (the rows) into ``folder``; return both paths."""
    json_path = os.path.join(folder, "results.json")
    md_path = os.path.join(folder, "results.md")
    atomic_write_text(json_path, json.dumps(json_safe(result), indent=2, sort_keys=False) + "\n")
    atomic_write_text(md_path, markdown_table(result.get("rows", []), title))
    return {"json": json_path, "markdown": md_path}
