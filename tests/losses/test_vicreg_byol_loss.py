import math

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output


def vicreg(a, b, **params):
    return build_loss({"NAME": "vicreg_loss", "PARAMS": params})(make_output([a, b]), {})


def test_vicreg_variance_by_hand():
    # dim 0 has std sqrt(2) > 1 (no hinge); dim 1 is constant: std = sqrt(0 + 1e-4) = 0.01.
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    terms = vicreg(z, z.clone())
    assert terms["invariance"].item() == 0.0
    assert terms["variance"].item() == pytest.approx((1 - 0.01) / 2, rel=1e-12)
    assert terms["covariance"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(25 * 0.495, rel=1e-12)


def test_vicreg_covariance_and_invariance_by_hand():
    # Perfectly correlated dimensions: cov = [[2, 2], [2, 2]] -> off-diagonal sum of squares 8, / D = 4 per view.
    a = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    b = a + torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=torch.float64)
    terms = vicreg(a, a.clone())
    assert terms["covariance"].item() == pytest.approx(8.0, rel=1e-12)
    assert terms["loss"].item() == pytest.approx(8.0, rel=1e-12)
    assert vicreg(a, b)["invariance"].item() == pytest.approx(0.25 / 4, rel=1e-12)  # one entry off by 0.5


def reference_vicreg(x, y, sim=25.0, std_w=25.0, cov_w=1.0):
    """The paper's Algorithm 1, written out."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 1e-4), torch.sqrt(y.var(dim=0) + 1e-4)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x, cov_y = (x.T @ x) / (n - 1), (y.T @ y) / (n - 1)
    off = lambda m: m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()
    cov_loss = off(cov_x).pow(2).sum() / d + off(cov_y).pow(2).sum() / d
    return sim * repr_loss + std_w * std_loss + cov_w * cov_loss


def test_vicreg_matches_reference():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(16, 8, generator=g, dtype=torch.float64) * 0.5 for _ in range(2))
    torch.testing.assert_close(vicreg(a, b)["loss"], reference_vicreg(a, b), rtol=1e-12, atol=1e-12)


def test_vicreg_rejects_bad_weights_and_tiny_batches():
    with pytest.raises(ValueError, match="variance_weight"):
        build_loss({"NAME": "vicreg_loss", "PARAMS": {"variance_weight": -1}})
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg(torch.randn(1, 3), torch.randn(1, 3))


def byol(student, teacher):
    return build_loss({"NAME": "byol_loss"})(make_output(student, teacher), {})["loss"]


def test_byol_by_hand():
    e1, e2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    # student view 0 vs teacher view 1 and student view 1 vs teacher view 0
    assert byol([e1, e2], [e1 * 2, e2 * 7]).item() == pytest.approx(4.0)  # both orthogonal: 2 + 2
    assert byol([e2, e1], [e1, e2]).item() == pytest.approx(0.0, abs=1e-7)  # both aligned
    assert byol([-e2, e1], [e1, e2]).item() == pytest.approx(4.0)  # opposite (4) + aligned (0)


def test_byol_pairs_by_view_index_and_stops_teacher_gradient():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(5, 3, generator=g, requires_grad=True) for _ in range(2)]
    t = [torch.randn(5, 3, generator=g, requires_grad=True) for _ in range(2)]
    output = make_output(s, t)
    output.student_views, output.teacher_views = [1, 2], [2, 1]  # teacher given in the other order
    loss = build_loss({"NAME": "byol_loss"})(output, {})["loss"]
    expected = sum((2 - 2 * F.cosine_similarity(p, z, dim=1)).mean() for p, z in ((s[0], t[0]), (s[1], t[1])))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert t[0].grad is None and s[0].grad is not None


def test_byol_needs_matching_views():
    with pytest.raises(ValueError, match="same 2 views"):
        byol([torch.randn(4, 3)] * 3, [torch.randn(4, 3)] * 3)
    with pytest.raises(ValueError, match="teacher views"):
        byol([torch.randn(4, 3)] * 2, None)
