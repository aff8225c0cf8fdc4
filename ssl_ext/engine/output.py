"""What one training step hands to the loss."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch


@dataclass
class ModelOutput:
    """Per-view outputs of one step (local batch of this rank).

    student: head outputs of the student (online) network, one ``(N, D)`` tensor
        per view in ``student_views`` (after ``MODEL.STUDENT_ONLY_HEADS`` too, e.g.
        BYOL's predictor).
    teacher: outputs of the EMA teacher (trunk + ``MODEL.HEADS``), one per view in
        ``teacher_views``, computed without gradient; ``None`` without a teacher.
    student_views / teacher_views: indices into the batch's ``views`` list.
    extras: anything a model adds (e.g. ``student_embeddings`` before student-only heads).
        The trunk's per-view extras of the student (``SSLModel``'s ``ViewOutputs.extras``,
        e.g. the ViT's ``patch_mask``) arrive as ``student_<key>``: one entry per student view.
    """

    student: List[torch.Tensor]
    teacher: Optional[List[torch.Tensor]] = None
    student_views: List[int] = field(default_factory=list)
    teacher_views: List[int] = field(default_factory=list)
    extras: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, per_view in getattr(self.student, "extras", {}).items():
            self.extras.setdefault(f"student_{key}", per_view)
