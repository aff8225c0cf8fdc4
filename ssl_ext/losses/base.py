"""Base class of ssl_ext losses: Classy Vision's ClassyLoss with keyword ``from_config``."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from classy_vision.losses import ClassyLoss


class SSLLoss(ClassyLoss):
    """A self-supervised loss.

    ``forward(output: ModelOutput, batch: dict)`` returns a scalar tensor, or a dict
    of scalar tensors whose ``"loss"`` entry is optimized and whose other entries
    (named terms such as ``"me_max"``) are logged. ``output`` is an
    ``ssl_ext.engine.output.ModelOutput``: the student (and EMA teacher) embeddings of
    every view of one step.

    Without the trainer, ``forward_tensors(student=[...], teacher=[...])`` runs the loss
    on plain per-view tensors; the mathematics itself is in ``ssl_ext.losses.functional``.

    A Classy Vision or VISSL task calls a loss as ``loss(output_tensor, target)``; an
    ssl_ext loss cannot read student/teacher views from one tensor, so that call stops
    with a message pointing at the VISSL adapter (``ssl_ext.integrations.vissl``).
    """

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SSLLoss":
        config = {k: v for k, v in dict(config).items() if k not in ("name", "NAME")}
        return cls(**config)

    def __call__(self, *args: Any, **kwargs: Any):
        output = args[0] if args else kwargs.get("output")
        if not hasattr(output, "student"):
            raise TypeError(_not_a_model_output_message(self, output))
        return super().__call__(*args, **kwargs)

    def forward(self, output, batch) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_tensors(
        self,
        student: Sequence[torch.Tensor],
        teacher: Optional[Sequence[torch.Tensor]] = None,
        student_views: Optional[Sequence[int]] = None,
        teacher_views: Optional[Sequence[int]] = None,
        batch: Optional[Mapping[str, Any]] = None,
        extras: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Run the loss on plain tensors, without the trainer; returns its dict of terms.

        ``student``: one ``(N, D)`` tensor per view from the online network (for BYOL and
        the centroid loss: the predictor's outputs); ``teacher``: one per view from the
        EMA target network, for the losses that use one. ``student_views`` /
        ``teacher_views`` are the views' indices in the batch (default ``0, 1, ...``);
        losses that pair student and teacher views (BYOL, leave-one-out centroid) match
        them by index. ``batch`` is the step's batch dict and ``extras`` the model's extra
        outputs (``ModelOutput.extras``, e.g. a patch mask), for the losses that read them.
        Each registered loss's docstring shows an example.
        """
        from ssl_ext.engine.output import ModelOutput  # a dataclass module; the engine package is not imported

        student = list(student)
        teacher = None if teacher is None else list(teacher)
        output = ModelOutput(
            student=student,
            teacher=teacher,
            student_views=list(range(len(student))) if student_views is None else list(student_views),
            teacher_views=[] if teacher is None else list(range(len(teacher)) if teacher_views is None else teacher_views),
            extras=dict(extras or {}),
        )
        terms = self(output, dict(batch or {}))
        return terms if isinstance(terms, dict) else {"loss": terms}


def _not_a_model_output_message(loss: SSLLoss, output: Any) -> str:
    if isinstance(output, torch.Tensor):
        got = f"a Tensor of shape {tuple(output.shape)}"
    elif isinstance(output, (list, tuple)) and output and all(isinstance(t, torch.Tensor) for t in output):
        got = f"a {type(output).__name__} of {len(output)} tensors"
    else:
        got = f"a {type(output).__name__}"
    cls = type(loss)
    return (
        f"{cls.__module__}.{cls.__qualname__} was called with {got} as its model output, the way a Classy Vision or "
        f"VISSL task calls a loss (loss(model_output, target)). ssl_ext losses read the student/teacher embeddings of "
        f"every view from an ssl_ext.engine.output.ModelOutput. To train an ssl_ext loss inside VISSL or Classy "
        f"Vision, use the adapter in ssl_ext.integrations.vissl, which wraps the loss by name and maps VISSL's head "
        f"outputs to views (see the README's VISSL section). To call the loss on plain tensors, use "
        f"loss.forward_tensors(student=[...], teacher=[...]) or the functions in ssl_ext.losses.functional."
    )
