"""Contract tests run over every loss registered by ssl_ext (timm-style parametrization)."""
import pytest
import torch
from classy_vision.losses import ClassyLoss, build_loss as classy_build_loss

import registry
from registry import build_loss
from loss_testing import FIXED_GRADCHECK_VIEWS, RANDOM_LOSSES, call_loss, tiny_case

BUILTIN_LOSSES = sorted(n for n in registry.LOSSES.names() if registry.LOSSES.get(n).__module__.startswith("ssl_ext."))


def test_builtin_losses_are_all_here():
    expected = {"simclr_loss", "msn_loss", "pmsn_loss", "vicreg_loss", "byol_loss", "msbreg_loss",
                "multiview_centroid_loss", "singular_value_loss", "brownian_diffusive_loss"}
    assert expected <= set(BUILTIN_LOSSES)


def _loss_fn(name, loss, teacher, student):
    fixed = FIXED_GRADCHECK_VIEWS.get(name, ())

    def fn(*varied):
        if name in RANDOM_LOSSES:
            torch.manual_seed(0)
        free = iter(varied)
        views = [student[i] if i in fixed else next(free) for i in range(len(student))]
        return call_loss(name, loss, views, teacher)["loss"]

    return fn


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_gradcheck_float64(name):
    # Gradients w.r.t. the student embeddings. MSN's prototypes also shape its
    # (stop-gradient) targets, so a finite difference over them is not the intended
    # gradient; test_msn_loss checks the prototype gradient against a reference.
    # Views in FIXED_GRADCHECK_VIEWS also make stop-gradient targets (SwAV's codes) and stay fixed.
    params, student, teacher = tiny_case(name)
    loss = build_loss({"NAME": name, "PARAMS": params}).to(torch.float64)
    fixed = FIXED_GRADCHECK_VIEWS.get(name, ())
    inputs = tuple(s.requires_grad_(True) for i, s in enumerate(student) if i not in fixed)
    assert torch.autograd.gradcheck(_loss_fn(name, loss, teacher, student), inputs)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_terms_are_finite_scalars_and_classy_vision_builds_it(name):
    params, student, teacher = tiny_case(name, dtype=torch.float32)
    loss = build_loss({"NAME": name, "PARAMS": params})
    assert isinstance(loss, ClassyLoss)
    terms = call_loss(name, loss, student, teacher, dtype=torch.float32)
    assert "loss" in terms
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    # Registered in Classy Vision's loss registry too, so a VISSL/Classy trainer builds it by name.
    assert type(classy_build_loss({"name": name, **params})) is type(loss)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_amp_outputs_are_computed_in_float32(name):
    params, student, teacher = tiny_case(name, dtype=torch.float32)
    loss = build_loss({"NAME": name, "PARAMS": params})
    reference = call_loss(name, loss, student, teacher, torch.float32)["loss"] if name not in RANDOM_LOSSES else None
    low = [s.bfloat16() for s in student]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = call_loss(name, loss, low, None if teacher is None else [t.bfloat16() for t in teacher], torch.float32)["loss"]
    assert value.dtype == torch.float32 and torch.isfinite(value)
    if reference is not None:  # only the inputs were rounded to bf16, not the loss arithmetic
        assert value.item() == pytest.approx(reference.item(), rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_misspelled_parameter_is_caught(name):
    with pytest.raises(ValueError, match="no parameter 'temprature'"):
        build_loss({"NAME": name, "PARAMS": {"temprature": 0.1}})
