import math

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output


def reference_nt_xent(a, b, temperature):
    """Straight from the SimCLR paper: loop over the 2N anchors."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = [torch.dot(z[i], z[k]) / temperature for k in range(2 * n) if k != i]
        log_denominator = torch.logsumexp(torch.stack(sims), dim=0)
        total = total - (torch.dot(z[i], z[positive]) / temperature - log_denominator)
    return total / (2 * n)


def simclr(a, b, temperature=0.1):
    return build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": temperature}})(make_output([a, b]), {})


def test_two_samples_by_hand():
    # Positives identical (cos 1), negatives orthogonal (cos 0): every anchor has
    # loss -log(e^(1/t) / (e^(1/t) + 2)).
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    b = torch.tensor([[5.0, 0.0], [0.0, 0.5]])
    terms = simclr(a, b, temperature=1.0)
    assert terms["loss"].item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def test_matches_reference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    for t in (0.1, 0.5, 2.0):
        torch.testing.assert_close(simclr(a, b, t)["loss"], reference_nt_xent(a, b, t), rtol=1e-12, atol=1e-12)


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: simclr(x, y, 0.5)["loss"], (a, b))


@pytest.mark.parametrize("bad", [0, -0.1, "0.1", True, None])
def test_rejects_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": bad}})


def test_needs_two_views():
    loss = build_loss({"NAME": "simclr_loss"})
    with pytest.raises(ValueError, match="2 student views"):
        loss(make_output([torch.randn(4, 3)]), {})
    with pytest.raises(ValueError, match="share one shape"):
        loss(make_output([torch.randn(4, 3), torch.randn(5, 3)]), {})
