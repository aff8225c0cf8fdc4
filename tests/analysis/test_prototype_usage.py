"""Prototype usage through the MSN/PMSN loss's own predictions, and loading prototypes from checkpoints."""
import math

import numpy as np
import pytest
import torch

import registry
from ssl_ext.analysis.cluster_analysis import analyze_prototypes
from ssl_ext.analysis.prototype_usage import MissingLossState, load_loss_state, prototype_module, prototype_usage
from ssl_ext.utils.io import atomic_torch_save


def msn(name="msn_loss", **extra):
    params = {"num_prototypes": 4, "embed_dim": 4, "temperature": 0.1, **extra}
    loss = registry.build_loss({"NAME": name, "PARAMS": params})
    with torch.no_grad():
        loss.prototypes.copy_(torch.eye(4))
    return loss


def test_usage_of_prototypes_by_hand():
    loss = msn()
    embeddings = torch.tensor([[2.0, 0, 0, 0]] * 3 + [[0, 5.0, 0, 0]])
    usage = prototype_usage(embeddings, prototype_module(loss))
    assert usage["hard"].tolist() == [3, 1, 0, 0]
    assert usage["assignments"].tolist() == [0, 0, 0, 1]
    # cos = 1 with the own prototype, 0 with the others; logits cos / 0.1.
    own = math.exp(10) / (math.exp(10) + 3)
    other = 1 / (math.exp(10) + 3)
    np.testing.assert_allclose(usage["soft"], [(3 * own + other) / 4, (3 * other + own) / 4, other, other], rtol=1e-6)
    np.testing.assert_allclose(usage["prior"], np.full(4, 0.25))


def test_pmsn_usage_reports_its_power_law_prior_and_kl():
    loss = msn("pmsn_loss", prior={"NAME": "power_law", "PARAMS": {"tau": 1.0}})
    embeddings = torch.eye(4)[[0, 0, 0, 0, 1, 1, 2, 3]] * 3
    usage = prototype_usage(embeddings, prototype_module(loss))
    prior = np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (1 + 1 / 2 + 1 / 3 + 1 / 4)
    np.testing.assert_allclose(usage["prior"], prior)
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    analysis = analyze_prototypes(usage, labels, null_draws=0)
    hard = analysis["details"]["hard"]
    assert hard["sorted_sizes"] == [4, 2, 1, 1]
    assert hard["purity"] == 1.0
    p = np.array([4, 2, 1, 1]) / 8
    assert hard["kl_prior"] == pytest.approx(float(np.sum(p * np.log(p / prior))))
    assert [r["clustering"] for r in analysis["rows"]] == ["prototype p̄ (soft)", "prototype argmax"]


def test_losses_without_prototypes_have_none():
    assert prototype_module(registry.build_loss({"NAME": "simclr_loss", "PARAMS": {}})) is None


def test_prototypes_load_from_a_checkpoint_loss_state(tmp_path):
    trained = msn()
    with torch.no_grad():
        trained.prototypes.mul_(2)
    path = str(tmp_path / "model_iteration00000001.torch")
    atomic_torch_save({"model": {}, "loss": trained.state_dict()}, path)
    fresh = registry.build_loss({"NAME": "msn_loss", "PARAMS": {"num_prototypes": 4, "embed_dim": 4}})
    load_loss_state(fresh, path)
    torch.testing.assert_close(fresh.prototypes, 2 * torch.eye(4))

    plain = str(tmp_path / "plain.pth")
    atomic_torch_save({"trunk.w": torch.zeros(1)}, plain)
    with pytest.raises(MissingLossState, match="no loss state.*ANALYSIS.PROTOTYPES=never"):
        load_loss_state(fresh, plain)
    other = registry.build_loss({"NAME": "msn_loss", "PARAMS": {"num_prototypes": 8, "embed_dim": 4}})
    with pytest.raises(ValueError, match="does not fit config.LOSS"):
        load_loss_state(other, path)


def test_embedding_width_mismatch_is_explained():
    with pytest.raises(ValueError, match="prototypes of width 4"):
        prototype_usage(torch.zeros(2, 3), prototype_module(msn()))
