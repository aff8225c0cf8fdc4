"""Value checks, after the key and type checks of ``validate.py``: ranges, choices, nulls, paths that
must exist, and the values inside plugin ``PARAMS`` (by building the cheap plugins, trunks and
heads on the ``meta`` device), so a bad value stops the run before any data loads or process
starts, with a message naming the config key.

``RULES`` maps a key (``*`` matches one level, e.g. a data split) to its check. A key of
defaults.yaml whose default is not null must not be set to null.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from ssl_ext.config.errors import ConfigError


@dataclass(frozen=True)
class Number:
    """A number in [low, high] (``open_low``: strictly above low); ``or_value``: one extra allowed value."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    or_value: Optional[float] = None

    def problem(self, value: Any) -> Optional[str]:
        if self.or_value is not None and value == self.or_value:
            return None
        too_low = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        too_high = self.high is not None and value > self.high
        if not (too_low or too_high):
            return None
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        extra = f" (or {self.or_value:g})" if self.or_value is not None else ""
        return f"must be {' and '.join(bounds)}{extra}"


@dataclass(frozen=True)
class Choice:
    options: Sequence[str]
    pattern: str = ""

    def problem(self, value: Any) -> Optional[str]:
        if value in self.options or (self.pattern and re.fullmatch(self.pattern, str(value))):
            return None
        return f"must be one of {', '.join(map(str, self.options))}"


@dataclass(frozen=True)
class NonEmpty:
    def problem(self, value: Any) -> Optional[str]:
        return "must not be empty" if value in ("", None) or (isinstance(value, list) and not value) else None


@dataclass(frozen=True)
class ExistingPath:
    """A local file or folder that must exist ("" allowed: unset). Remote iopath URLs are not checked."""

    def problem(self, value: Any) -> Optional[str]:
        values = value if isinstance(value, list) else [value]
        missing = [v for v in values if v and "://" not in str(v) and not os.path.exists(os.path.expanduser(str(v)))]
        return f"names {missing[0]!r}, which does not exist" if missing else None


@dataclass(frozen=True)
class Each:
    """Applies ``rule`` to every item of a list."""

    rule: Any

    def problem(self, value: Any) -> Optional[str]:
        for item in value or []:
            problem = self.rule.problem(item)
            if problem:
                return f"item {item!r} {problem}"
        return None


POSITIVE_INT = Number(low=1)
NON_NEGATIVE = Number(low=0)
POSITIVE = Number(low=0, open_low=True)
PROBABILITY = Number(low=0, high=1)
OFF_OR_POSITIVE = Number(low=1, or_value=-1)

RULES: Dict[str, Any] = {
    "config.SEED_VALUE": NON_NEGATIVE,
    "config.MACHINE.DEVICE": Choice(["auto", "cpu", "cuda"], pattern=r"cuda:\d+"),
    "config.MACHINE.NUM_THREADS": NON_NEGATIVE,
    "config.DATA.NUM_DATALOADER_WORKERS": NON_NEGATIVE,
    "config.DATA.DATASET_CATALOG": ExistingPath(),
    "config.DATA.*.DATA_SOURCES": NonEmpty(),
    # DATA_PATHS are not checked here: full-scale configs name cluster paths, and every data source
    # names a missing path when it is built (before any process starts training).
    "config.DATA.*.BATCHSIZE_PER_REPLICA": POSITIVE_INT,
    "config.DATA.TRAIN.AUGMENT_ON": Choice(["loader", "device"]),
    "config.DATA.TRAIN.LONG_TAIL.PROFILE": Choice(["power_law", "exponential"]),
    "config.DATA.TRAIN.LONG_TAIL.IMBALANCE_RATIO": Number(low=1),
    "config.MODEL.EMA_TEACHER.MOMENTUM_START": PROBABILITY,
    "config.MODEL.EMA_TEACHER.MOMENTUM_END": PROBABILITY,
    "config.MODEL.WEIGHTS_INIT.PARAMS_FILE": ExistingPath(),
    "config.MODEL.WEIGHTS_INIT.SOURCE": Choice(["student", "teacher"]),
    "config.MODEL.AMP.DTYPE": Choice(["bfloat16", "float16"]),
    "config.LOSS.NAME": NonEmpty(),
    "config.OPTIMIZER.BASE_LR": POSITIVE,
    "config.OPTIMIZER.BASE_LR_BATCH_SIZE": POSITIVE_INT,
    "config.OPTIMIZER.WEIGHT_DECAY": NON_NEGATIVE,
    "config.OPTIMIZER.CLIP_GRAD_NORM": NON_NEGATIVE,
    "config.OPTIMIZER.ACCUMULATE_GRAD_STEPS": POSITIVE_INT,
    "config.OPTIMIZER.NUM_EPOCHS": POSITIVE_INT,
    "config.OPTIMIZER.MAX_ITERATIONS": OFF_OR_POSITIVE,
    "config.OPTIMIZER.LR_SCHEDULE.WARMUP_EPOCHS": NON_NEGATIVE,
    "config.OPTIMIZER.LR_SCHEDULE.WARMUP_START_FACTOR": NON_NEGATIVE,
    "config.OPTIMIZER.LR_SCHEDULE.END_FACTOR": NON_NEGATIVE,
    "config.OPTIMIZER.LR_SCHEDULE.GAMMA": POSITIVE,
    "config.OPTIMIZER.WD_SCHEDULE.WEIGHT_DECAY_END": NON_NEGATIVE,
    "config.HOOKS.LOG_FREQUENCY": POSITIVE_INT,
    "config.HOOKS.PROGRESS_BAR": Choice(["auto", "on", "off"]),
    "config.CHECKPOINT.DIR": NonEmpty(),
    # 0 and -1 both turn periodic checkpoints off (the final one is always written).
    "config.CHECKPOINT.CHECKPOINT_FREQUENCY": Number(low=0, or_value=-1),
    "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY": Number(low=0, or_value=-1),
    "config.CHECKPOINT.KEEP_LAST": NON_NEGATIVE,
    "config.CHECKPOINT.ON_UNREADABLE": Choice(["stop", "start_over"]),
    "config.DISTRIBUTED.BACKEND": Choice(["auto", "gloo", "nccl"]),
    "config.DISTRIBUTED.NUM_NODES": POSITIVE_INT,
    "config.DISTRIBUTED.NUM_PROC_PER_NODE": POSITIVE_INT,
    "config.DISTRIBUTED.START_METHOD": Choice(["spawn", "fork", "forkserver"]),
    "config.BENCHMARK.KNN.K": Each(POSITIVE_INT),
    "config.BENCHMARK.KNN.TEMPERATURE": POSITIVE,
    "config.BENCHMARK.KNN.QUERY_BATCH_SIZE": POSITIVE_INT,
    "config.BENCHMARK.LINEAR.FAST.LEARNING_RATES": Each(POSITIVE),
    "config.BENCHMARK.LINEAR.FAST.WEIGHT_DECAYS": Each(NON_NEGATIVE),
    "config.BENCHMARK.LINEAR.FAST.BATCH_SIZE": POSITIVE_INT,
    "config.BENCHMARK.LINEAR.FAST.MOMENTUM": Number(low=0, high=1),
    "config.BENCHMARK.LINEAR.FAST.SCHEDULE": Choice(["cosine", "constant"]),
    "config.BENCHMARK.LOW_SHOT.PERCENTS": Each(Number(low=0, high=100, open_low=True)),
    "config.BENCHMARK.LOW_SHOT.PER_CLASS": Each(POSITIVE_INT),
    "config.BENCHMARK.LOW_SHOT.NUM_DRAWS": POSITIVE_INT,
    "config.BENCHMARK.LOW_SHOT.LAMBDAS": Each(POSITIVE),
    "config.BENCHMARK.LOW_SHOT.MAX_ITER": POSITIVE_INT,
    "config.ANALYSIS.KMEANS.NITER": POSITIVE_INT,
    "config.ANALYSIS.KMEANS.NREDO": POSITIVE_INT,
    "config.ANALYSIS.NULL_DRAWS": NON_NEGATIVE,
    "config.SLURM.GPUS_PER_NODE": NON_NEGATIVE,
    "config.SLURM.CPUS_PER_TASK": NON_NEGATIVE,
    "config.SLURM.MEM_GB": NON_NEGATIVE,
    "config.SLURM.TIME_MINUTES": POSITIVE_INT,
    "config.SLURM.PORT_ID": Number(low=1024, high=65535),
    "config.SLURM.SIGNAL_DELAY_S": NON_NEGATIVE,
    "config.SLURM.MAX_REQUEUES": NON_NEGATIVE,
    "config.SLURM.ARRAY_PARALLELISM": POSITIVE_INT,
}


def _leaves(node: Any, path: str) -> Iterable[tuple]:
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig) and str(key) not in ("PARAMS", "SOURCE_PARAMS", "LOSS_SCHEDULES"):
                yield from _leaves(child, f"{path}.{key}")
            else:
                yield f"{path}.{key}", child


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node._value()


def check_values(cfg: DictConfig, schema: DictConfig, origin: Callable[[str], str]) -> None:
    """Ranges, choices, existing paths, and no null where defaults.yaml has a value."""
    for key, node in _leaves(cfg.config, "config"):
        value = _plain(node)
        default = OmegaConf.select(schema, key, default="<absent>", throw_on_missing=False)
        if value is None and default is not None and default != "<absent>":
            raise ConfigError(f"Config key {key!r} is null (in {origin(key)}); it needs a value like the default {_plain_default(default)!r}.")
        for pattern, rule in RULES.items():
            if fnmatch.fnmatchcase(key, pattern):
                if isinstance(value, (int, float)) and isinstance(rule, Number) or not isinstance(rule, Number):
                    problem = rule.problem(value)
                    if problem:
                        raise ConfigError(f"Config key {key!r} = {value!r} (in {origin(key)}) {problem}.")
    check_schedules(cfg)


def check_schedules(cfg: DictConfig) -> None:
    """Build the lr, weight-decay and loss-parameter schedules now (a known NAME, a warm-up shorter than
    training, LOSS_SCHEDULES' keys): the trainer builds them only after the data and model."""
    from ssl_ext.engine.schedules import loss_param_schedule, lr_schedule, wd_schedule

    optimizer = _plain(cfg.config.OPTIMIZER)
    lr_schedule(optimizer, 1.0, optimizer["NUM_EPOCHS"])
    wd_schedule(optimizer)
    for name, spec in (_plain(cfg.config.LOSS_SCHEDULES) or {}).items():
        loss_param_schedule(str(name), spec if isinstance(spec, dict) else {})


def _plain_default(default: Any) -> Any:
    return OmegaConf.to_container(default) if isinstance(default, (DictConfig, ListConfig)) else default


def _param_key(where: str, params: Dict[str, Any], message: str) -> str:
    """``where.PARAMS.<name>`` for the first parameter the plugin's message names, else ``where.PARAMS``."""
    for name in params:
        if re.search(rf"\b{re.escape(str(name))}\b", message):
            return f"{where}.PARAMS.{name}"
    return f"{where}.PARAMS"


def _build_checked(where: str, kind: str, spec: Any, build: Callable[[], Any]) -> Any:
    """Build one plugin; its own ValueError/TypeError/FileNotFoundError becomes a ConfigError naming the key."""
    spec = _plain(spec) if isinstance(spec, (DictConfig, ListConfig)) else spec
    params = dict(spec.get("PARAMS") or {}) if isinstance(spec, dict) else {}
    name = spec.get("NAME") if isinstance(spec, dict) else spec
    try:
        return build()
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if isinstance(exc, ConfigError):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{_param_key(where, params, message)}: {kind} {name!r} rejects its parameters: {message}") from None


def check_plugin_values(cfg: DictConfig) -> None:
    """Build the loss (with priors and regularizers), transforms, optimizer, and the trunk and heads
    on the meta device (no memory, no initialisation cost), so their own argument checks run now."""
    import torch

    import registry

    c = cfg.config
    losses = [_build_checked("config.LOSS", "loss", c.LOSS, lambda: registry.build_loss({"NAME": c.LOSS.NAME, "PARAMS": _plain(c.LOSS.PARAMS)}))]
    for i, spec in enumerate(c.LOSS.get("REGULARIZERS") or []):
        plain = _plain(spec)
        losses.append(_build_checked(f"config.LOSS.REGULARIZERS[{i}]", "loss", plain,
                                     lambda plain=plain: registry.build_loss({"NAME": plain["NAME"], "PARAMS": plain.get("PARAMS") or {}})))
    _check_loss_schedules(c, losses)
    for split in ("TRAIN", "VAL"):
        transform = OmegaConf.select(cfg, f"config.DATA.{split}.TRANSFORM", default=None)
        if transform is not None and transform.get("NAME"):
            built = _build_checked(f"config.DATA.{split}.TRANSFORM", "transform", transform, lambda t=transform: registry.build_transform(_plain(t)))
            if split == "TRAIN":
                _check_view_indices(c, built)
    probe = [{"params": [torch.nn.Parameter(torch.zeros(1))], "weight_decay": 0.0}]
    optimizer = {"NAME": c.OPTIMIZER.NAME, "PARAMS": _plain(c.OPTIMIZER.PARAMS)}
    _build_checked("config.OPTIMIZER", "optimizer", optimizer, lambda: registry.build_optimizer(optimizer, params=probe))
    with torch.device("meta"):
        trunk = _meta_build("config.MODEL.TRUNK", "trunk", c.MODEL.TRUNK, lambda: registry.build_trunk(_plain(c.MODEL.TRUNK)))
        width = getattr(trunk, "out_dim", None)
        for section in ("HEADS", "STUDENT_ONLY_HEADS"):
            for i, spec in enumerate(c.MODEL.get(section) or []):
                if width is None:
                    return
                head = _meta_build(f"config.MODEL.{section}[{i}]", "head", spec,
                                   lambda s=spec, w=width: registry.build_head(_plain(s), in_dim=w))
                width = getattr(head, "out_dim", None)


def _check_loss_schedules(c: DictConfig, losses: List[Any]) -> None:
    """A scheduled name must be a hyper-parameter of the loss (its sub-losses or regularizers), and when it is
    one of the loss's arguments, the loss must accept the schedule's START and END (a temperature below 0)."""
    import inspect

    import torch

    import registry

    params = _plain(c.LOSS.PARAMS) or {}
    arguments = inspect.signature(registry.LOSSES.get(str(c.LOSS.NAME))).parameters
    for name, spec in (_plain(c.LOSS_SCHEDULES) or {}).items():
        key, name = f"config.LOSS_SCHEDULES.{name}", str(name)
        modules = [m for loss in losses for m in (loss.modules() if isinstance(loss, torch.nn.Module) else [loss])]
        if not any(name in vars(m) and not isinstance(vars(m)[name], (torch.nn.Module, torch.Tensor)) for m in modules):
            raise ConfigError(f"{key}: loss {str(c.LOSS.NAME)!r} (and its sub-losses) has no hyper-parameter {name!r} to schedule.")
        if name not in arguments or not isinstance(spec, dict):
            continue
        for end in ("START", "END"):
            if end in spec:
                try:
                    registry.build_loss({"NAME": c.LOSS.NAME, "PARAMS": {**params, name: spec[end]}})
                except (ValueError, TypeError) as exc:
                    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise ConfigError(f"{key}.{end} = {spec[end]!r}: loss {str(c.LOSS.NAME)!r} rejects {name}={spec[end]!r}: {message}") from None


def _check_view_indices(c: DictConfig, transform: Any) -> None:
    """MODEL.STUDENT_VIEWS / TEACHER_VIEWS must name views the train transform makes (when its view plan says how many)."""
    from ssl_ext.data.batched.spec import view_plan

    try:
        count = sum(n for _, n in view_plan(transform))
    except ValueError:  # a transform without a view plan: its views are counted at the first step
        return
    for section in ("STUDENT_VIEWS", "TEACHER_VIEWS"):
        wrong = [i for i in c.MODEL.get(section) or [] if not isinstance(i, int) or not 0 <= i < count]
        if wrong:
            raise ConfigError(
                f"config.MODEL.{section} = {list(c.MODEL[section])}: view {wrong[0]!r} does not exist; the train transform "
                f"{str(c.DATA.TRAIN.TRANSFORM.NAME)!r} makes {count} views, numbered 0 to {count - 1}."
            )


@contextlib.contextmanager
def config_errors(where: str, spec: Any = None):
    """Inside, a plugin's ``ValueError``/``FileNotFoundError`` (its documented argument checks, e.g. a
    sampler asked for more classes than the dataset has) becomes a ``ConfigError`` naming ``where``
    (``config.DATA.TRAIN.SAMPLER``), or ``where.PARAMS.<name>`` when the message names a parameter."""
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, ConfigError):
            raise
        plain = _plain(spec) if isinstance(spec, (DictConfig, ListConfig)) else (spec or {})
        params = dict(plain.get("PARAMS") or {}) if isinstance(plain, dict) else {}
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        key = _param_key(where, params, message) if params else where
        raise ConfigError(f"{key}: {message}") from exc


def _meta_build(where: str, kind: str, spec: Any, build: Callable[[], Any]) -> Any:
    """Like ``_build_checked``, but an error that only the meta device causes (a real tensor op at
    build time) is left for the real build to report."""
    try:
        return _build_checked(where, kind, spec, build)
    except ConfigError as exc:
        if "meta" in str(exc).lower():
            return None
        raise
    except (RuntimeError, NotImplementedError):
        return None


__all__: List[str] = ["RULES", "check_values", "check_plugin_values", "config_errors"]
