"""Initial weights for evaluation and fine-tuning (VISSL's ``MODEL.WEIGHTS_INIT``).

``load_weights_init(module, weights_cfg)`` fills ``module`` (a trunk or a whole
``SSLModel``) from one of:

* an ssl_ext training checkpoint (entries named in ``ssl_ext.engine.checkpoint_keys``:
  ``{"model": student, "teacher": EMA teacher, ...}``),
  choosing the student or the teacher with ``SOURCE``;
* a VISSL checkpoint (``classy_state_dict -> base_model -> model -> {trunk, heads}``);
* checkpoints of other SSL code bases that keep the network under a named entry
  (``state_dict``, ``model``, ``teacher``, ``student``, ``target_encoder``, ``encoder``);
* a plain ``state_dict``;
* a run directory, meaning its final (newest) checkpoint.

``RANDOM_INIT: true`` skips loading: the random-init floor of any config.

Key names are matched after removing the wrapper prefixes these code bases add
(``module.`` from DDP, ``trunk.``/``backbone.``/``encoder.``/``model.`` from model
wrappers, VISSL's ``_feature_blocks.``), on both sides, so a trunk loads from a
full-model checkpoint and the other way round. Entries of ``SKIP_LAYERS`` (prefixes
of the original or of the stripped names) are left out, as are source keys the
target does not have (projection heads, prototypes). Every target key must be
filled; a missing key or a shape mismatch raises ``WeightsInitError`` naming the
keys, so a checkpoint of the wrong architecture never loads silently.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ssl_ext.engine import checkpoint_keys
from ssl_ext.errors import UserError

logger = logging.getLogger(__name__)

# Longest first, so "module.backbone." style chains strip one wrapper at a time in a stable order.
WRAPPER_PREFIXES: Tuple[str, ...] = (
    "_feature_blocks.",
    "backbone.",
    "encoder.",
    "module.",
    "trunk.",
    "model.",
)
# Entries of a checkpoint dict that hold a network, per requested source, most specific first.
NESTED_MODEL_KEYS: Dict[str, Tuple[str, ...]] = {
    "student": (checkpoint_keys.STUDENT, "student", "encoder", "state_dict", "model_state_dict", "network"),
    "teacher": (checkpoint_keys.TEACHER, "target_encoder", "momentum_encoder", "ema"),
}
VALID_SOURCES = tuple(NESTED_MODEL_KEYS)


class WeightsInitError(UserError, ValueError):
    """A checkpoint that cannot initialise the model; the message names the file and keys."""


def strip_wrapper_prefixes(key: str, prefixes: Sequence[str] = WRAPPER_PREFIXES) -> str:
    """Remove leading wrapper prefixes (repeatedly: ``module.trunk._feature_blocks.conv1`` -> ``conv1``)."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix) and len(key) > len(prefix):
                key = key[len(prefix):]
                changed = True
    return key


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _vissl_trunk_and_heads(checkpoint: Mapping[str, Any]) -> Optional[Dict[str, torch.Tensor]]:
    try:
        model = checkpoint["classy_state_dict"]["base_model"]["model"]
    except (KeyError, TypeError):
        return None
    merged: Dict[str, torch.Tensor] = {}
    for part in ("trunk", "heads"):
        for key, value in (model.get(part) or {}).items():
            merged[f"{part}.{key}"] = value
    return merged


def select_state_dict(checkpoint: Any, source: str, path: str = "<checkpoint>") -> Dict[str, torch.Tensor]:
    """The tensors of the requested network (``student`` or ``teacher``) inside a loaded checkpoint."""
    if source not in VALID_SOURCES:
        raise WeightsInitError(f"MODEL.WEIGHTS_INIT.SOURCE must be one of {list(VALID_SOURCES)}, got {source!r}")
    if not isinstance(checkpoint, Mapping):
        raise WeightsInitError(f"{path}: expected a dict (state dict or checkpoint), got {type(checkpoint).__name__}")
    vissl = _vissl_trunk_and_heads(checkpoint)
    if vissl is not None:
        if source == "teacher":
            raise WeightsInitError(f"{path} is a VISSL checkpoint, which has no teacher: set MODEL.WEIGHTS_INIT.SOURCE=student")
        return vissl
    for key in NESTED_MODEL_KEYS[source]:
        nested = checkpoint.get(key)
        if _is_state_dict(nested):
            return dict(nested)
    if source == "teacher":
        raise WeightsInitError(
            f"{path} has no teacher weights (looked for {list(NESTED_MODEL_KEYS['teacher'])}; top-level keys: "
            f"{sorted(map(str, checkpoint))[:20]}). The run probably had MODEL.EMA_TEACHER.ENABLED=false: "
            f"set MODEL.WEIGHTS_INIT.SOURCE=student."
        )
    tensors = {k: v for k, v in checkpoint.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsInitError(
            f"{path} holds no tensors at the top level nor under {list(NESTED_MODEL_KEYS['student'])}; "
            f"top-level keys: {sorted(map(str, checkpoint))[:20]}"
        )
    return tensors


def _normalized_index(keys: Iterable[str]) -> Dict[str, str]:
    """Map stripped name -> original name; a name that strips ambiguously keeps its original form."""
    index: Dict[str, str] = {}
    collisions = set()
    keys = list(keys)
    for key in keys:
        short = strip_wrapper_prefixes(key)
        if short in index:
            collisions.add(short)
        index[short] = key
    for short in collisions:
        del index[short]
    for key in keys:
        if strip_wrapper_prefixes(key) in collisions:
            index[key] = key
    return index


def _skipped(key: str, skip_layers: Sequence[str]) -> bool:
    short = strip_wrapper_prefixes(key)
    return any(key.startswith(p) or short.startswith(p) for p in skip_layers)


def remap_state_dict(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    skip_layers: Sequence[str] = (),
    path: str = "<checkpoint>",
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename ``source`` keys to ``target``'s names; return (renamed state dict, unused source keys).

    Raises ``WeightsInitError`` listing the target keys left without a value and
    the keys whose shapes differ.
    """
    target_index = _normalized_index(target.keys())
    source_index = _normalized_index(k for k in source.keys() if not _skipped(k, skip_layers))
    renamed: Dict[str, torch.Tensor] = {}
    used = set()
    mismatched = []
    for short, target_key in target_index.items():
        source_key = source_index.get(short)
        if source_key is None:
            continue
        value = source[source_key]
        if tuple(value.shape) != tuple(target[target_key].shape):
            mismatched.append(
                f"{source_key} {tuple(value.shape)} -> {target_key} {tuple(target[target_key].shape)}"
            )
            continue
        renamed[target_key] = value
        used.add(source_key)
    if mismatched:
        raise WeightsInitError(
            f"{path}: shape mismatch for {len(mismatched)} key(s) (checkpoint -> model): "
            + "; ".join(mismatched[:20])
            + ". The checkpoint was trained with another architecture: check MODEL.TRUNK.PARAMS "
            "or add the layers to MODEL.WEIGHTS_INIT.SKIP_LAYERS."
        )
    missing = [k for k in target.keys() if k not in renamed]
    if missing:
        raise WeightsInitError(
            f"{path}: {len(missing)} model key(s) have no value in the checkpoint: {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}. Checkpoint keys look like {sorted(source)[:8]}. "
            f"Check MODEL.TRUNK matches the checkpoint and MODEL.WEIGHTS_INIT.SOURCE."
        )
    unused = sorted(k for k in source if k not in used)
    return renamed, unused


def load_state_dict_into(
    module: nn.Module, state: Mapping[str, torch.Tensor], skip_layers: Sequence[str] = (), path: str = "<checkpoint>"
) -> List[str]:
    """Load ``state`` into ``module`` with prefix remapping; return the checkpoint keys not used."""
    target = module.state_dict()
    renamed, unused = remap_state_dict(state, target, skip_layers, path)
    module.load_state_dict(renamed, strict=True)
    return unused


def resolve_params_file(params_file: str) -> str:
    """``params_file`` itself, or, for a run directory, its final (newest) checkpoint.

    A run directory is recognised by its ``checkpoints/`` folder, so
    ``PARAMS_FILE=runs/demo/msn`` evaluates what that run ended with.
    """
    from ssl_ext.engine.checkpoint import checkpoint_dir, list_checkpoints
    from ssl_ext.utils.io import path_manager

    if not params_file or not path_manager.isdir(params_file):
        return params_file
    found = list_checkpoints(params_file)
    if not found:
        raise WeightsInitError(
            f"MODEL.WEIGHTS_INIT.PARAMS_FILE={params_file!r} is a directory without checkpoints (looked in "
            f"{checkpoint_dir(params_file)!r}): give a run directory that has trained, or a checkpoint file."
        )
    return found[0][1]


def load_weights_file(
    module: nn.Module, params_file: str, source: str = "student", skip_layers: Sequence[str] = ()
) -> List[str]:
    """Read ``params_file`` (a file, or a run directory: its final checkpoint) and load the chosen network into ``module``."""
    from ssl_ext.utils.io import path_manager, torch_load

    params_file = resolve_params_file(params_file)
    if not path_manager.exists(params_file):
        raise WeightsInitError(
            f"MODEL.WEIGHTS_INIT.PARAMS_FILE={params_file!r} does not exist: give the path of a checkpoint "
            f"(e.g. <run dir>/checkpoints/model_iterationNNNNNNNN.torch) or \"\" for random weights."
        )
    try:
        checkpoint = torch_load(params_file, weights_only=True)
    except Exception as exc:
        raise WeightsInitError(
            f"MODEL.WEIGHTS_INIT.PARAMS_FILE={params_file!r} could not be read "
            f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}). "
            f"It may be truncated or not a torch file."
        ) from exc
    state = select_state_dict(checkpoint, source, params_file)
    unused = load_state_dict_into(module, state, skip_layers, params_file)
    if unused:
        logger.info("%s: %d checkpoint key(s) not used by %s (e.g. %s)", params_file, len(unused), type(module).__name__, unused[:5])
    return unused


def uses_random_init(weights_cfg: Any) -> bool:
    """True when ``WEIGHTS_INIT`` leaves the trunk at its (seeded) random initialisation.

    ``RANDOM_INIT: true`` is the one-key floor of any config: it ignores ``PARAMS_FILE``,
    so a benchmark config or a run's ``train_config.yaml`` evaluates the untrained
    network of the same architecture with the same probe.
    """
    return bool(weights_cfg.get("RANDOM_INIT", False)) or not str(weights_cfg.get("PARAMS_FILE", "") or "")


def load_weights_init(module: nn.Module, weights_cfg: Any) -> bool:
    """Apply ``config.MODEL.WEIGHTS_INIT`` to ``module``; return False when it asks for random init
    (``RANDOM_INIT: true`` or an empty ``PARAMS_FILE``)."""
    params_file = str(weights_cfg.get("PARAMS_FILE", "") or "")
    if uses_random_init(weights_cfg):
        return False
    load_weights_file(
        module,
        params_file,
        source=str(weights_cfg.get("SOURCE", "student")),
        skip_layers=[str(s) for s in (weights_cfg.get("SKIP_LAYERS", []) or [])],
    )
    return True
