import math

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output


def loss_of(name, student, teacher=None, **params):
    return build_loss({"NAME": name, "PARAMS": params})(make_output(student, teacher), {})


# ------------------------------------------------------------- multiview centroid
def test_centroid_by_hand():
    t1, t2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    # centroid of normalized targets = (0.5, 0.5); cos with (1, 0) is 1/sqrt(2), with (1, 1) it is 1.
    value = loss_of("multiview_centroid_loss", [torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 3.0]])], [t1, t2])
    assert value["loss"].item() == pytest.approx(((2 - math.sqrt(2)) + 0.0) / 2, rel=1e-6)


def test_centroid_with_two_views_leave_one_out_is_half_byol():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    t = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    centroid = loss_of("multiview_centroid_loss", s, t, leave_one_out=True)["loss"]
    byol = build_loss({"NAME": "byol_loss"})(make_output(s, t), {})["loss"]
    torch.testing.assert_close(centroid, byol / 2, rtol=1e-12, atol=1e-12)


def test_centroid_is_zero_when_views_agree():
    z = torch.randn(5, 3, dtype=torch.float64)
    value = loss_of("multiview_centroid_loss", [z, 2 * z, 3 * z, z], [z, z, 5 * z, z])["loss"]
    assert value.item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- singular value
def test_singular_value_collapsed_vs_orthonormal_by_hand():
    n = 4
    collapsed = torch.ones(n, 6, dtype=torch.float64)  # rank 1: sigma_1 = sqrt(n)
    orthonormal = torch.eye(6, dtype=torch.float64)[:n] * 3  # rows normalized -> all sigma = 1
    g = torch.Generator().manual_seed(0)
    random = torch.randn(n, 6, generator=g, dtype=torch.float64)
    values = {k: loss_of("singular_value_loss", [v])["loss"].item()
              for k, v in {"collapsed": collapsed, "orthonormal": orthonormal, "random": random}.items()}
    assert values["collapsed"] == pytest.approx(-math.sqrt(n), rel=1e-12)
    assert values["orthonormal"] == pytest.approx(-n, rel=1e-12)
    assert values["orthonormal"] < values["random"] < values["collapsed"]


def test_singular_value_options():
    collapsed = torch.ones(4, 3, dtype=torch.float64)
    assert loss_of("singular_value_loss", [collapsed], center=True)["loss"].item() == pytest.approx(0.0, abs=1e-12)
    raw = torch.diag(torch.tensor([3.0, 4.0], dtype=torch.float64))
    assert loss_of("singular_value_loss", [raw], normalize=False)["loss"].item() == pytest.approx(-7.0)
    two_views = loss_of("singular_value_loss", [raw, torch.ones(2, 2, dtype=torch.float64)])["loss"]
    assert two_views.item() == pytest.approx((-2.0 - math.sqrt(2)) / 2)  # mean over views
    with pytest.raises(ValueError, match="center"):
        build_loss({"NAME": "singular_value_loss", "PARAMS": {"center": 1}})


# ------------------------------------------------------------------- brownian
def test_brownian_value_and_gradient_are_the_drawn_noise():
    z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    value = loss_of("brownian_diffusive_loss", [z], normalize=False, noise_std=2.0)["loss"]
    value.backward()
    torch.manual_seed(3)
    noise = torch.randn(8, 5, dtype=torch.float64) * 2.0 / math.sqrt(5)
    torch.testing.assert_close(value, (z.detach() * noise).sum(1).mean())
    torch.testing.assert_close(z.grad, noise / 8)


def test_brownian_kick_is_tangent_to_the_sphere_when_normalized():
    z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    loss_of("brownian_diffusive_loss", [z])["loss"].backward()
    torch.testing.assert_close((z.grad * z.detach()).sum(1), torch.zeros(8, dtype=torch.float64))


def test_brownian_has_zero_expected_gradient():
    torch.manual_seed(0)
    z = torch.randn(4, 16, dtype=torch.float64, requires_grad=True)
    loss = build_loss({"NAME": "brownian_diffusive_loss", "PARAMS": {"normalize": False, "scale_by_dim": False}})
    draws = 4000
    for _ in range(draws):
        loss(make_output([z]), {})["loss"].backward()
    # Each entry of one draw's gradient is N(0, 1/4^2); the mean of 4000 draws has std 1/(4 sqrt(4000)).
    per_draw_std = 1 / 4
    assert (z.grad / draws).abs().max() < 5 * per_draw_std / math.sqrt(draws)
    # A single draw is far from zero: the kick is real.
    z.grad = None
    loss(make_output([z]), {})["loss"].backward()
    assert z.grad.abs().max() > 5 * per_draw_std / math.sqrt(draws)


# --------------------------------------------------------------------- msbreg
def test_msbreg_adds_weighted_regularizers_to_its_base():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    t = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    torch.manual_seed(7)
    terms = loss_of("msbreg_loss", s, t, singular_value_weight=0.25, brownian_weight=0.5)
    torch.manual_seed(7)
    base = loss_of("multiview_centroid_loss", s, t)["loss"]
    singular = loss_of("singular_value_loss", s)["loss"]
    brownian = loss_of("brownian_diffusive_loss", s)["loss"]
    torch.testing.assert_close(terms["loss"], base + 0.25 * singular + 0.5 * brownian, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["base"], base)
    torch.testing.assert_close(terms["singular_value"], singular)
    torch.testing.assert_close(terms["brownian"], brownian)


def test_msbreg_regularizes_another_base_and_skips_zero_weights():
    g = torch.Generator().manual_seed(1)
    s = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    spec = {"NAME": "vicreg_loss", "PARAMS": {"covariance_weight": 2.0}}
    terms = loss_of("msbreg_loss", s, base=spec, brownian_weight=0.0)
    vicreg = build_loss(spec)(make_output(s), {})
    assert "brownian" not in terms
    torch.testing.assert_close(terms["base_covariance"], vicreg["covariance"])
    torch.testing.assert_close(terms["loss"], vicreg["loss"] + 0.004 * loss_of("singular_value_loss", s)["loss"])


def test_msbreg_with_msn_base_owns_the_prototypes():
    loss = build_loss({"NAME": "msbreg_loss", "PARAMS": {"base": {"NAME": "msn_loss", "PARAMS": {"embed_dim": 8}}}})
    assert [n for n, _ in loss.named_parameters()] == ["base.prototypes"]  # "prototypes": no weight decay


def test_msbreg_errors():
    with pytest.raises(ValueError, match="not msbreg_loss"):
        build_loss({"NAME": "msbreg_loss", "PARAMS": {"base": {"NAME": "msbreg_loss"}}})
    with pytest.raises(ValueError, match="brownian_weight"):
        build_loss({"NAME": "msbreg_loss", "PARAMS": {"brownian_weight": -0.5}})
    with pytest.raises(ValueError, match="noise_stdd"):
        build_loss({"NAME": "msbreg_loss", "PARAMS": {"brownian": {"noise_stdd": 1.0}}})
