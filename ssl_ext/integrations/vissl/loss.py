"""``ssl_ext_loss``: any ssl_ext loss as a VISSL (Classy Vision) loss.

VISSL calls ``loss(model_output, target)`` with one tensor holding the head output of
every crop of the batch, and expects a scalar back. ssl_ext losses take a
``ModelOutput`` (per-view student and teacher embeddings) and return named terms. This
module bridges the two:

* the rows of VISSL's head output are split into views by a :class:`ViewLayout` that is
  *read from the batch* (``data_idx`` of every row and the shape of the collated input),
  not assumed: VISSL's ``simclr_collator`` stacks the crops view-major into one tensor,
  ``multicrop_collator`` hands a list with one tensor per crop (possibly of different
  resolutions, e.g. MSN's large and focal views), and other collators may interleave
  image-major; all three are recognised, anything else fails with a message;
* student views are taken from the trained model's output, teacher views from the EMA
  teacher (:class:`~ssl_ext.integrations.vissl.hooks.EMATeacherHook`), which lives in this
  loss so that VISSL checkpoints it with the loss state, as VISSL's own DINO/MoCo do;
* the optimized ``"loss"`` term is returned; every term is kept in ``last_terms`` for
  :class:`~ssl_ext.integrations.vissl.hooks.LossTermsLogHook`.

Config (``config.LOSS``)::

    name: ssl_ext_loss
    ssl_ext_loss:
      NAME: pmsn_loss            # any name of ssl_ext's loss registry
      PARAMS: {...}              # its keyword arguments
      NUM_VIEWS: null            # crops per image; null: read from the batch
      STUDENT_VIEWS: []          # view indices given to the loss as student views; [] = all
      TEACHER_VIEWS: []          # view indices the EMA teacher encodes; [] = all
      STUDENT_ONLY_HEADS: 0      # last heads the teacher leaves out (BYOL's predictor: 1)
      EMA_TEACHER: {ENABLED: false, MOMENTUM_START: 0.996, MOMENTUM_END: 1.0}

The loss's own parameters (MSN/PMSN prototypes) are trained by VISSL's optimizer
through ``ssl_ext_task`` (:mod:`ssl_ext.integrations.vissl.task`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from classy_vision.losses import ClassyLoss, register_loss
from torch import nn

from registry import build_loss
from ssl_ext.engine.output import ModelOutput

LOSS_NAME = "ssl_ext_loss"
CONFIG_KEY = f"config.LOSS.{LOSS_NAME}"
EMA_DEFAULTS = {"ENABLED": False, "MOMENTUM_START": 0.996, "MOMENTUM_END": 1.0}
KNOWN_KEYS = ("NAME", "PARAMS", "NUM_VIEWS", "STUDENT_VIEWS", "TEACHER_VIEWS", "STUDENT_ONLY_HEADS", "EMA_TEACHER")


@dataclass(frozen=True)
class ViewLayout:
    """Where each view's rows are in the collated batch (and in the model output, which keeps its order).

    ``rows[v]`` indexes the ``n`` rows of view ``v``, aligned so that row ``i`` of every view
    is the same image. ``per_crop_inputs``: the input is a list with one tensor per view.
    """

    rows: List[torch.Tensor]
    per_crop_inputs: bool
    order: str

    @property
    def num_views(self) -> int:
        return len(self.rows)

    def views_of(self, stacked: torch.Tensor) -> List[torch.Tensor]:
        """Split rows of ``stacked`` (the model output) into one tensor per view."""
        return [stacked.index_select(0, rows.to(stacked.device)) for rows in self.rows]

    def inputs_of(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]], views: Sequence[int]) -> List[torch.Tensor]:
        """The input images of the given views, one tensor per view."""
        if self.per_crop_inputs:
            return [inputs[v] for v in views]
        return [inputs.index_select(0, self.rows[v].to(inputs.device)) for v in views]


def _flat_data_idx(data_idx: Any) -> torch.Tensor:
    if isinstance(data_idx, (list, tuple)):  # one entry per VISSL data source; all sources share the order
        data_idx = data_idx[0]
    return torch.as_tensor(data_idx).reshape(-1).cpu()


def infer_view_layout(inputs: Union[torch.Tensor, Sequence[torch.Tensor]], data_idx: Any,
                      num_views: Optional[int] = None) -> ViewLayout:
    """Recognise how the collator arranged the crops, from the dataset index of every row.

    ``inputs``: VISSL's ``sample["input"]`` (one stacked tensor, or one tensor per crop);
    ``data_idx``: ``sample["data_idx"]`` (dataset index of every row, in input order).
    A layout is accepted only when every view holds the same images in the same order.
    """
    index = _flat_data_idx(data_idx)
    if isinstance(inputs, (list, tuple)):
        sizes = [int(x.shape[0]) for x in inputs]
        views = len(sizes)
        if num_views is not None and num_views != views:
            raise ValueError(
                f"{CONFIG_KEY}.NUM_VIEWS={num_views} but the collator produced {views} crop tensors; "
                f"set NUM_VIEWS to {views} or null."
            )
        if len(set(sizes)) != 1 or index.numel() != sum(sizes):
            raise ValueError(
                f"ssl_ext_loss: the collated crops hold {sizes} images and data_idx has {index.numel()} entries; "
                "every crop tensor must hold one crop of each image of the batch (VISSL's multicrop_collator does)."
            )
        n = sizes[0]
        grid = index.view(views, n)
        if not bool((grid == grid[0]).all()):
            raise ValueError(
                "ssl_ext_loss: the crop tensors do not list the same images in the same order (data_idx differs "
                "between crops), so views cannot be paired; use VISSL's multicrop_collator or simclr_collator."
            )
        rows = [torch.arange(v * n, (v + 1) * n) for v in range(views)]
        return ViewLayout(rows, per_crop_inputs=True, order="one tensor per crop")

    total = int(inputs.shape[0])
    if index.numel() != total:
        raise ValueError(f"ssl_ext_loss: the input has {total} rows but data_idx has {index.numel()} entries.")
    views = num_views if num_views is not None else total // max(int(index.unique().numel()), 1)
    if views < 1 or total % views:
        raise ValueError(
            f"ssl_ext_loss: cannot split {total} rows into {views} views; set {CONFIG_KEY}.NUM_VIEWS to the number of "
            "crops per image that the TRANSFORMS make (e.g. ImgReplicatePil's num_times)."
        )
    n = total // views
    view_major = index.view(views, n)
    if bool((view_major == view_major[0]).all()):  # VISSL's simclr_collator: all first crops, then all second crops
        return ViewLayout([torch.arange(v * n, (v + 1) * n) for v in range(views)], False, "view-major")
    image_major = index.view(n, views)
    if bool((image_major == image_major[:, :1]).all()):  # crops of one image next to each other
        return ViewLayout([torch.arange(n) * views + v for v in range(views)], False, "image-major")
    raise ValueError(
        f"ssl_ext_loss: the {total} rows are neither view-major nor image-major for {views} views per image "
        f"(data_idx starts {index[:8].tolist()}); set {CONFIG_KEY}.NUM_VIEWS to the crops per image "
        "(an image drawn twice in one batch makes the count ambiguous) or use simclr_collator/multicrop_collator."
    )


def _view_list(value: Any, key: str) -> List[int]:
    views = list(value or [])
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in views):
        raise ValueError(f"{CONFIG_KEY}.{key} must be a list of view indices (ints >= 0), got {value!r}.")
    return views


@register_loss(LOSS_NAME)
class SSLExtLoss(ClassyLoss):
    """An ssl_ext loss (``ssl_loss``) fed from VISSL's head output; see the module docstring.

    Before each call, :meth:`prepare_batch` (run by ``ViewLayoutHook`` in ``on_forward``)
    records the batch's view layout and ``teacher_outputs`` is filled by the EMA teacher
    hook; both are consumed by the call, so a stale batch is never reused.
    """

    def __init__(self, loss_spec: Mapping[str, Any], num_views: Optional[int] = None,
                 student_views: Sequence[int] = (), teacher_views: Sequence[int] = (),
                 ema_teacher: Optional[Mapping[str, Any]] = None, student_only_heads: int = 0) -> None:
        super().__init__()
        if num_views is not None and (isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1):
            raise ValueError(f"{CONFIG_KEY}.NUM_VIEWS must be a positive int or null, got {num_views!r}.")
        if isinstance(student_only_heads, bool) or not isinstance(student_only_heads, int) or student_only_heads < 0:
            raise ValueError(f"{CONFIG_KEY}.STUDENT_ONLY_HEADS must be an int >= 0, got {student_only_heads!r}.")
        self.student_only_heads = student_only_heads
        self.loss_spec = dict(loss_spec)
        self.ssl_loss: nn.Module = build_loss(self.loss_spec)
        self.num_views = num_views
        self.student_view_ids = _view_list(student_views, "STUDENT_VIEWS")
        self.teacher_view_ids = _view_list(teacher_views, "TEACHER_VIEWS")
        ema = {**EMA_DEFAULTS, **dict(ema_teacher or {})}
        unknown = sorted(set(ema) - set(EMA_DEFAULTS))
        if unknown:
            raise ValueError(f"{CONFIG_KEY}.EMA_TEACHER: unknown keys {unknown}; known: {sorted(EMA_DEFAULTS)}.")
        self.ema_enabled = bool(ema["ENABLED"])
        self.ema_momentum_start = float(ema["MOMENTUM_START"])
        self.ema_momentum_end = float(ema["MOMENTUM_END"])
        # The EMA teacher: a frozen copy of VISSL's model, attached by ssl_ext_task at build time.
        self.teacher: Optional[nn.Module] = None
        self.view_layout: Optional[ViewLayout] = None
        self.batch_info: Dict[str, Any] = {}
        self.teacher_outputs: Optional[List[torch.Tensor]] = None
        self.last_terms: Dict[str, float] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SSLExtLoss":
        config = {k: v for k, v in dict(config).items() if k != "name"}
        unknown = sorted(set(config) - set(KNOWN_KEYS))
        if unknown:
            raise ValueError(f"{CONFIG_KEY}: unknown keys {unknown}; known keys: {list(KNOWN_KEYS)}.")
        if not config.get("NAME"):
            raise ValueError(
                f"{CONFIG_KEY}.NAME is missing: name the ssl_ext loss to run (e.g. simclr_loss, pmsn_loss), "
                "with its keyword arguments in PARAMS."
            )
        return cls(
            {"NAME": config["NAME"], "PARAMS": dict(config.get("PARAMS") or {})},
            num_views=config.get("NUM_VIEWS"),
            student_views=config.get("STUDENT_VIEWS") or (),
            teacher_views=config.get("TEACHER_VIEWS") or (),
            ema_teacher=config.get("EMA_TEACHER"),
            student_only_heads=config.get("STUDENT_ONLY_HEADS") or 0,
        )

    def has_learned_parameters(self) -> bool:
        # Classy would wrap a loss with parameters in its own DistributedDataParallel. ssl_ext_task
        # registers them in the model instead, so the model's DDP reduces their gradients once.
        return False

    def trainable_parameters(self) -> Dict[str, nn.Parameter]:
        """The ssl_ext loss's own trained parameters (e.g. prototypes), by name."""
        return {name: p for name, p in self.ssl_loss.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------- per step
    def prepare_batch(self, sample: Mapping[str, Any]) -> ViewLayout:
        """Read the view layout (and labels, indices) of the batch VISSL is about to score."""
        if "data_idx" not in sample:
            raise ValueError("ssl_ext_loss needs sample['data_idx'] to pair the views; VISSL's collators provide it.")
        self.view_layout = infer_view_layout(sample["input"], sample["data_idx"], self.num_views)
        self.batch_info = {"label": sample.get("target"), "data_idx": sample["data_idx"]}
        self.teacher_outputs = None
        return self.view_layout

    def resolved_views(self, ids: List[int], key: str, layout: Optional[ViewLayout] = None) -> List[int]:
        """The configured view indices (all views when empty), checked against the batch."""
        num_views = (layout or self.view_layout).num_views
        bad = [v for v in ids if v >= num_views]
        if bad:
            raise ValueError(f"{CONFIG_KEY}.{key}={ids}: the batch has only {num_views} views per image (0..{num_views - 1}).")
        return ids or list(range(num_views))

    def forward(self, model_output: Any, target: Any = None) -> torch.Tensor:
        if self.view_layout is None:
            raise RuntimeError(
                "ssl_ext_loss was called without the batch's view layout. Launch VISSL through "
                "`python -m ssl_ext.integrations.vissl.run_distributed_engines config=...` (or pass "
                "ssl_ext.integrations.vissl.ssl_ext_hook_generator as VISSL's hook_generator)."
            )
        if not isinstance(model_output, torch.Tensor):
            raise ValueError(
                f"ssl_ext_loss expects one head output tensor (one head chain in config.MODEL.HEAD.PARAMS), got "
                f"{type(model_output).__name__} of length {len(model_output) if hasattr(model_output, '__len__') else '?'}."
            )
        layout, teacher_out = self.view_layout, self.teacher_outputs
        self.view_layout, self.teacher_outputs = None, None
        student_ids = self.resolved_views(self.student_view_ids, "STUDENT_VIEWS", layout)
        views = layout.views_of(model_output)
        teacher_ids = self.resolved_views(self.teacher_view_ids, "TEACHER_VIEWS", layout) if teacher_out is not None else []
        output = ModelOutput(
            student=[views[v] for v in student_ids], teacher=teacher_out,
            student_views=student_ids, teacher_views=teacher_ids,
        )
        batch = {"views": None, "label": target, "data_idx": self.batch_info.get("data_idx")}
        try:
            terms = self.ssl_loss(output, batch)
        except ValueError as error:
            raise ValueError(
                f"{error}\n(ssl_ext_loss in VISSL: views and teacher are set under {CONFIG_KEY}: STUDENT_VIEWS, "
                "TEACHER_VIEWS, EMA_TEACHER.ENABLED, NUM_VIEWS. VISSL hands the loss the head output of every crop "
                "and nothing else: losses that also need the trunk's patch mask or the input pixels, such as "
                "mae_loss and data2vec_loss, run with ssl_ext's own trainer, not inside VISSL.)"
            ) from error
        if isinstance(terms, torch.Tensor):
            terms = {"loss": terms}
        self.last_terms = {name: float(value.detach().float()) for name, value in terms.items()}
        return terms["loss"]
