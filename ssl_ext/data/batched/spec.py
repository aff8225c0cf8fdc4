"""What a batched view group does, read from the per-image torchvision v2 pipeline it replaces.

The batched path does not have its own augmentation settings: it reads the
per-image transform's own ``v2.Compose`` pipelines (``ViewSpec.from_pipeline``),
so both paths draw from one set of numbers and cannot drift apart. Which
pipeline makes which output view is the transform's *view plan*
(``view_plan``): an ordered list of ``(pipeline, number of views)``.

Known transforms (``two_view``, ``multi_crop``) have their plan registered here;
another multi-view transform opts in with one method,
``view_plan(self) -> [(v2.Compose, count), ...]`` in output order, or with
``@register_view_plan(TransformClass)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Type

from torchvision.transforms import v2

Pair = Tuple[float, float]

# Steps the batched path reproduces, in the only order it applies them (all built-in pipelines use it).
_STEP_ORDER = ("crop", "flip", "jitter", "grayscale", "blur", "solarize", "to_float", "normalize")


@dataclass(frozen=True)
class ViewSpec:
    """One view group's augmentation: a random resized crop, then optional photometric steps.

    Probabilities are per view; ranges are the uniform ranges torchvision draws from
    (``brightness`` etc. as factor ranges, ``hue`` as a shift of the hue circle in [-0.5, 0.5]).
    ``solarize_threshold`` is on the [0, 1] intensity scale; ``blur_kernel`` is ``(kx, ky)``, torchvision's order.
    """

    size: Tuple[int, int]
    scale: Pair = (0.08, 1.0)
    ratio: Pair = (3.0 / 4.0, 4.0 / 3.0)
    hflip_prob: float = 0.0
    jitter_prob: float = 0.0
    brightness: Optional[Pair] = None
    contrast: Optional[Pair] = None
    saturation: Optional[Pair] = None
    hue: Optional[Pair] = None
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    blur_kernel: Tuple[int, int] = (1, 1)
    blur_sigma: Pair = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    @property
    def jitter_ranges(self) -> Tuple[Optional[Pair], ...]:
        """(brightness, contrast, saturation, hue) ranges; ``None`` where that adjustment is off."""
        return (self.brightness, self.contrast, self.saturation, self.hue)

    @classmethod
    def from_pipeline(cls, pipeline, owner: str = "transform") -> "ViewSpec":
        """Read a per-image ``v2.Compose`` (or a list of v2 steps); raise ``ValueError`` on a step it cannot batch."""
        steps = list(pipeline.transforms) if isinstance(pipeline, v2.Compose) else list(pipeline)
        fields: Dict[str, object] = {}
        seen: List[str] = []
        float_scale = False  # False while pixels are still uint8 (thresholds in 0..255)

        def mark(kind: str, step) -> None:
            if seen and _STEP_ORDER.index(kind) <= _STEP_ORDER.index(seen[-1]):
                raise ValueError(
                    f"{owner}: step {step!r} comes after {seen[-1]!r}; the batched path applies its steps in the "
                    f"order {list(_STEP_ORDER)}. Reorder the pipeline or use config.DATA.TRAIN.AUGMENT_ON=loader."
                )
            seen.append(kind)

        for step in steps:
            probability = 1.0
            inner = step
            if isinstance(step, v2.RandomApply):
                if len(step.transforms) != 1:
                    raise ValueError(f"{owner}: the batched path needs RandomApply around one step, got {step!r}.")
                probability, inner = float(step.p), step.transforms[0]
            if isinstance(inner, (v2.ToImage, v2.ToPureTensor)):
                continue
            if isinstance(inner, v2.RandomResizedCrop) and probability == 1.0:
                if str(getattr(inner.interpolation, "value", inner.interpolation)) != "bilinear" or inner.antialias is False:
                    raise ValueError(
                        f"{owner}: the batched path resizes crops with antialiased bilinear interpolation; "
                        f"{inner!r} asks for another. Use config.DATA.TRAIN.AUGMENT_ON=loader for it."
                    )
                mark("crop", inner)
                fields.update(size=tuple(inner.size), scale=tuple(map(float, inner.scale)), ratio=tuple(map(float, inner.ratio)))
            elif isinstance(inner, v2.RandomHorizontalFlip):
                mark("flip", inner)
                fields["hflip_prob"] = probability * float(inner.p)
            elif isinstance(inner, v2.ColorJitter):
                mark("jitter", inner)
                fields.update(
                    jitter_prob=probability,
                    **{name: (None if getattr(inner, name) is None else tuple(map(float, getattr(inner, name))))
                       for name in ("brightness", "contrast", "saturation", "hue")},
                )
            elif isinstance(inner, v2.RandomGrayscale):
                mark("grayscale", inner)
                fields["grayscale_prob"] = probability * float(inner.p)
            elif isinstance(inner, v2.GaussianBlur):
                mark("blur", inner)
                fields.update(blur_prob=probability, blur_kernel=tuple(inner.kernel_size), blur_sigma=tuple(map(float, inner.sigma)))
            elif isinstance(inner, v2.RandomSolarize):
                mark("solarize", inner)
                threshold = float(inner.threshold) if float_scale else float(inner.threshold) / 255.0
                fields.update(solarize_prob=probability * float(inner.p), solarize_threshold=threshold)
            elif isinstance(inner, v2.ToDtype) and probability == 1.0:
                mark("to_float", inner)
                float_scale = True
            elif isinstance(inner, v2.Normalize) and probability == 1.0:
                mark("normalize", inner)
                fields.update(mean=tuple(map(float, inner.mean)), std=tuple(map(float, inner.std)))
            else:
                raise ValueError(
                    f"{owner}: step {step!r} has no batched equivalent (supported: RandomResizedCrop, "
                    "RandomHorizontalFlip, ColorJitter, RandomGrayscale, GaussianBlur, RandomSolarize, "
                    "each optionally in RandomApply, then ToDtype and Normalize). "
                    "Use config.DATA.TRAIN.AUGMENT_ON=loader for this transform."
                )
        if "size" not in fields:
            raise ValueError(f"{owner}: the batched path needs a RandomResizedCrop as the first step; got {steps!r}.")
        return cls(**fields)


# ------------------------------------------------------------------ view plans
ViewPlan = List[Tuple[ViewSpec, int]]
_PLANS: Dict[type, Callable[[object], List[Tuple[object, int]]]] = {}


def register_view_plan(transform_class: Type) -> Callable:
    """Declare which pipeline of ``transform_class`` makes which views: ``fn(transform) -> [(pipeline, count)]``."""

    def wrap(fn):
        if transform_class in _PLANS:
            raise ValueError(f"A batched view plan for {transform_class.__name__} is already registered ({_PLANS[transform_class]}).")
        _PLANS[transform_class] = fn
        return fn

    return wrap


def view_plan(transform) -> ViewPlan:
    """``[(ViewSpec, count), ...]`` in the transform's output view order; ``ValueError`` if it has none."""
    owner = f"transform {type(transform).__name__}"
    if hasattr(transform, "view_plan"):
        pipelines = transform.view_plan()
    else:
        fn = next((f for cls, f in _PLANS.items() if isinstance(transform, cls)), None)
        if fn is None:
            raise ValueError(
                f"{owner} has no batched view plan, so config.DATA.TRAIN.AUGMENT_ON=device cannot reproduce it. "
                "Give the class a method view_plan(self) -> [(v2.Compose pipeline, number of views), ...] in "
                "output order (see ssl_ext/data/batched/spec.py), or use AUGMENT_ON=loader."
            )
        pipelines = fn(transform)
    plan = [(ViewSpec.from_pipeline(p, owner), int(n)) for p, n in pipelines if int(n) > 0]
    if not plan:
        raise ValueError(f"{owner}: its view plan makes no views.")
    return plan


def _builtin_plans() -> None:
    from ssl_ext.data.transforms.multi_crop import MultiCropTransform
    from ssl_ext.data.transforms.two_view import TwoViewTransform

    if TwoViewTransform not in _PLANS:
        register_view_plan(TwoViewTransform)(lambda t: [(t.augment, t.num_views)])
    if MultiCropTransform not in _PLANS:
        # multi_crop's order: [target, anchor] at large_size, then the focal views at small_size.
        register_view_plan(MultiCropTransform)(lambda t: [(t.large_view, 2), (t.small_view, t.num_small_views)])


_builtin_plans()

