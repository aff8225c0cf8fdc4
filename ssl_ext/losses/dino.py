"""DINO: self-distillation with no labels.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294.

The maths is in functions on plain tensors; the registered ``dino_loss`` adds the
center (a moving average carried by checkpoints) and the teacher-temperature warm-up.

>>> import torch
>>> teacher = dino_teacher_probs([torch.zeros(1, 2)], center=torch.zeros(2), temperature=0.04)
>>> teacher[0]
tensor([[0.5000, 0.5000]])
>>> student = [torch.zeros(1, 2), torch.zeros(1, 2)]
>>> dino_cross_entropy(student, teacher, student_ids=[0, 1], teacher_ids=[0], student_temperature=0.1)  # log 2
tensor(0.6931)
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from registry import register_loss
from ssl_ext.losses._views import (
    autocast_off, check_number, full_precision, student_views, teacher_views, view_ids,
)
from ssl_ext.losses.base import SSLLoss
from ssl_ext.utils.distributed import all_reduce_mean_with_grad, all_reduce_sum, all_reduce_sum_with_grad, get_world_size


@torch.no_grad()
def dino_teacher_probs(
    teacher_logits: Sequence[torch.Tensor], center: torch.Tensor, temperature: float,
    log_prior: Optional[torch.Tensor] = None,
) -> List[torch.Tensor]:
    """Centered, sharpened teacher targets ``softmax((t − center) / temperature [+ log π])`` per view.

    ``log_prior`` (optional, ``(K,)``) tilts the targets toward a cluster prior π (the
    prior-matching variant); a uniform π adds a constant, which the softmax removes.
    """
    shifted = [(t.detach() - center) / temperature for t in teacher_logits]
    if log_prior is not None:
        shifted = [s + log_prior for s in shifted]
    return [torch.softmax(s, dim=1) for s in shifted]


def dino_cross_entropy(
    student_logits: Sequence[torch.Tensor], teacher_probs: Sequence[torch.Tensor], student_ids: Sequence[int],
    teacher_ids: Sequence[int], student_temperature: float,
) -> torch.Tensor:
    """Mean over (teacher view a, student view b ≠ a) pairs of ``H(teacher_a, softmax(student_b / τ_s))``.

    Views are matched by batch view index (``student_ids``/``teacher_ids``): a student
    view is never asked to predict the teacher's output of the same crop, as in DINO.
    Each cross-entropy is averaged over the local rows. Summing the teacher targets
    over views first computes all pairs with one product per student view.
    """
    pairs = sum(1 for a in teacher_ids for b in student_ids if a != b)
    if pairs == 0:
        raise ValueError(
            f"dino_cross_entropy: no (teacher, student) pair of different views among teacher views "
            f"{list(teacher_ids)} and student views {list(student_ids)}"
        )
    total_target = sum(teacher_probs)
    by_view = dict(zip(teacher_ids, teacher_probs))
    loss = 0.0
    for logits, view in zip(student_logits, student_ids):
        target = total_target - by_view[view] if view in by_view else total_target
        loss = loss - (target * F.log_softmax(logits / student_temperature, dim=1)).sum(dim=1).mean()
    return loss / pairs


@torch.no_grad()
def updated_center(center: torch.Tensor, teacher_logits: Sequence[torch.Tensor], momentum: float) -> torch.Tensor:
    """``momentum · center + (1 − momentum) · mean`` of the teacher logits over views and the global batch."""
    rows = sum(t.shape[0] for t in teacher_logits) * get_world_size()
    batch_mean = all_reduce_sum(sum(t.detach().sum(dim=0) for t in teacher_logits)) / rows
    return center * momentum + batch_mean.to(center.dtype) * (1.0 - momentum)


def teacher_temperature_at(step: int, warmup_temperature: float, temperature: float, warmup_steps: int) -> float:
    """DINO's schedule: linear from ``warmup_temperature`` to ``temperature`` over ``warmup_steps``, then constant."""
    if step >= warmup_steps:
        return temperature
    return warmup_temperature + (temperature - warmup_temperature) * step / warmup_steps


def mean_student_probs(student_logits: Sequence[torch.Tensor], student_temperature: float) -> torch.Tensor:
    """p̄: the mean student prediction over every view and row of the global batch (keeps the gradient)."""
    rows = sum(s.shape[0] for s in student_logits) * get_world_size()
    total = sum(torch.softmax(s / student_temperature, dim=1).sum(dim=0) for s in student_logits)
    return all_reduce_sum_with_grad(total) / rows


@register_loss("dino_loss")
class DINOLoss(SSLLoss):
    """DINO's cross-entropy between the EMA teacher's centered, sharpened outputs and the student's.

    Views: the teacher gets the global crops (``MODEL.TEACHER_VIEWS``, DINO: the two
    224 px crops), the student every crop (global and local). Each student crop predicts
    the teacher's output of every *other* global crop (``dino_cross_entropy``).

    * teacher targets ``softmax((t − c) / τ_t)``; τ_t warms up linearly from
      ``warmup_teacher_temperature`` to ``teacher_temperature`` over the first
      ``warmup_teacher_temperature_steps`` training steps;
    * the center ``c`` is updated after every training forward pass with the mean
      teacher output of the global batch: ``c ← m c + (1 − m) mean(t)``;
    * ``regularization_weight`` > 0 adds λ·me-max ``= λ KL(p̄ ‖ uniform)`` on the
      student's mean prediction p̄ (not in DINO, off by default; the prior-matching
      variant ``pdino_loss`` with a uniform prior reduces to it).

    The center ``center`` and the step counter ``steps`` are registered buffers, so a
    checkpoint carries them and a resumed run continues exactly.

    Args:
        out_dim: K, the head's output width (DINO: 65536).
        student_temperature: τ_s (0.1).
        teacher_temperature: τ_t after warm-up (0.04; 0.07 for long ViT-S runs).
        warmup_teacher_temperature: τ_t at step 0 (None: no warm-up).
        warmup_teacher_temperature_steps: training steps of the linear warm-up (DINO: 30 epochs).
        center_momentum: m (0.9).
        regularization_weight: λ of the me-max term (0.0).
    """

    loss_name = "dino_loss"

    def __init__(
        self,
        out_dim: int = 65536,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: Optional[float] = None,
        warmup_teacher_temperature_steps: int = 0,
        center_momentum: float = 0.9,
        regularization_weight: float = 0.0,
    ) -> None:
        super().__init__()
        name = self.loss_name
        self.out_dim = check_number(out_dim, "out_dim", name, minimum=2, integer=True)
        self.student_temperature = check_number(student_temperature, "student_temperature", name, minimum=0, strict_min=True)
        self.teacher_temperature = check_number(teacher_temperature, "teacher_temperature", name, minimum=0, strict_min=True)
        self.warmup_teacher_temperature = (
            self.teacher_temperature if warmup_teacher_temperature is None else check_number(
                warmup_teacher_temperature, "warmup_teacher_temperature", name, minimum=0, strict_min=True)
        )
        self.warmup_teacher_temperature_steps = check_number(
            warmup_teacher_temperature_steps, "warmup_teacher_temperature_steps", name, minimum=0, integer=True
        )
        self.center_momentum = check_number(center_momentum, "center_momentum", name, minimum=0, maximum=1)
        self.regularization_weight = check_number(regularization_weight, "regularization_weight", name, minimum=0)
        self.register_buffer("center", torch.zeros(self.out_dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer(
            "prior", torch.full((self.out_dim,), 1.0 / self.out_dim, dtype=torch.float64), persistent=False
        )
        self.last_mean_probs: Optional[torch.Tensor] = None

    # ------------------------------------------------------------- subclasses
    def target_log_prior(self) -> Optional[torch.Tensor]:
        """log π added to the centered teacher logits (None: DINO's plain centering)."""
        return None

    def regularizer(self, mean_probs: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        me_max = torch.special.xlogy(mean_probs, mean_probs).sum() + math.log(self.out_dim)
        return {"me_max": me_max}, self.regularization_weight * me_max

    # ---------------------------------------------------------------- forward
    def current_teacher_temperature(self) -> float:
        return teacher_temperature_at(
            int(self.steps), self.warmup_teacher_temperature, self.teacher_temperature,
            self.warmup_teacher_temperature_steps,
        )

    def _checked_views(self, output) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        students = student_views(output, self.loss_name)
        teachers = teacher_views(output, self.loss_name)
        first = students[0]
        for what, tensors in (("student", students), ("teacher", teachers)):
            for i, t in enumerate(tensors):
                if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != self.out_dim:
                    shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise ValueError(
                        f"{self.loss_name}: {what} view {i} must be (N, out_dim={self.out_dim}), got {shape}; "
                        f"set LOSS.PARAMS.out_dim to the DINO head's out_dim"
                    )
                if t.shape[0] != first.shape[0]:
                    raise ValueError(f"{self.loss_name}: every view needs the same batch size ({what} view {i})")
        return students, teachers

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        students, teachers = self._checked_views(output)
        student_ids, teacher_ids = view_ids(output)
        training = self.training and torch.is_grad_enabled()
        temperature = self.current_teacher_temperature()
        with autocast_off(students[0]):
            students = [full_precision(s) for s in students]
            teachers = [full_precision(t).detach() for t in teachers]
            log_prior = self.target_log_prior()
            targets = dino_teacher_probs(
                teachers, self.center.to(teachers[0].dtype), temperature,
                None if log_prior is None else log_prior.to(teachers[0].dtype),
            )
            ce = all_reduce_mean_with_grad(
                dino_cross_entropy(students, targets, student_ids, teacher_ids, self.student_temperature)
            )
            terms = {"ce": ce}
            loss = ce
            if self.regularization_weight > 0:
                mean_probs = mean_student_probs(students, self.student_temperature)
                reg_terms, reg_loss = self.regularizer(mean_probs)
                loss = loss + reg_loss
                terms.update(reg_terms)
                self.last_mean_probs = mean_probs.detach()
            else:
                with torch.no_grad():
                    self.last_mean_probs = mean_student_probs([s.detach() for s in students], self.student_temperature)
        if training:
            self.center.copy_(updated_center(self.center, teachers, self.center_momentum))
            self.steps.add_(1)
        entropy_pbar = -torch.special.xlogy(self.last_mean_probs, self.last_mean_probs).sum()
        return {"loss": loss, **terms, "entropy_pbar": entropy_pbar,
                "teacher_temperature": torch.tensor(temperature, dtype=loss.dtype)}
