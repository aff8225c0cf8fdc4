import json

import numpy as np
import pytest
import torch

import registry
from registry import build_prior, register_prior
from ssl_ext.losses.priors import build_checked_prior


def test_power_law_values_by_hand():
    # pi_k = k^-0.25 / sum_j j^-0.25 for K = 4
    prior = build_prior({"NAME": "power_law", "PARAMS": {"tau": 0.25}}, num_prototypes=4)
    expected = torch.tensor([0.3023121849778871, 0.2542132326354231, 0.2297075863535039, 0.2137669960331859],
                            dtype=torch.float64)
    torch.testing.assert_close(prior, expected, rtol=1e-12, atol=1e-12)


def test_power_law_with_tau_zero_is_uniform():
    torch.testing.assert_close(
        build_prior({"NAME": "power_law", "PARAMS": {"tau": 0.0}}, num_prototypes=6),
        build_prior({"NAME": "uniform"}, num_prototypes=6),
    )


def _histogram_files(tmp_path):
    counts = [1.0, 100.0]
    np.save(tmp_path / "h.npy", np.array(counts))
    (tmp_path / "h.json").write_text(json.dumps({"cat": 1, "dog": 100}))
    (tmp_path / "h.txt").write_text("1\n100\n")
    return [tmp_path / "h.npy", tmp_path / "h.json", tmp_path / "h.txt"]


def test_from_file_sorts_and_resamples(tmp_path):
    for path in _histogram_files(tmp_path):
        same = build_prior({"NAME": "from_file", "PARAMS": {"path": str(path)}}, num_prototypes=2)
        torch.testing.assert_close(same, torch.tensor([100 / 101, 1 / 101], dtype=torch.float64))
        # 2 bins -> 3 prototypes: the middle rank is the geometric mean in log space...
        log3 = build_prior({"NAME": "from_file", "PARAMS": {"path": str(path)}}, num_prototypes=3)
        torch.testing.assert_close(log3, torch.tensor([100, 10, 1], dtype=torch.float64) / 111)
        # ... and the arithmetic mean in linear space.
        lin3 = build_prior({"NAME": "from_file", "PARAMS": {"path": str(path), "log_space": False}}, num_prototypes=3)
        torch.testing.assert_close(lin3, torch.tensor([100, 50.5, 1], dtype=torch.float64) / 151.5)


def test_from_file_drops_empty_bins(tmp_path):
    (tmp_path / "h.txt").write_text("0 5 0 20")
    prior = build_prior({"NAME": "from_file", "PARAMS": {"path": str(tmp_path / "h.txt")}}, num_prototypes=2)
    torch.testing.assert_close(prior, torch.tensor([0.8, 0.2], dtype=torch.float64))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.npy", None, "does not exist"),
        ("h.csv", "1,2", "suffix"),
        ("h.txt", "1 -2 3", ">= 0"),
        ("h.txt", "0 0", "positive total"),
        ("h.json", '{"a": "x"}', "cannot read"),
        ("h.json", "[[1, 2], [3, 4]]", "1-D"),
    ],
)
def test_from_file_errors_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        build_prior({"NAME": "from_file", "PARAMS": {"path": str(path)}}, num_prototypes=4)
    assert name in str(info.value)


def _default_params(name, tmp_path):
    if name == "from_file":
        path = tmp_path / "counts.npy"
        np.save(path, np.array([3.0, 50.0, 7.0, 1.0, 12.0]))
        return {"path": str(path)}
    return {}


BUILTIN_PRIORS = sorted(n for n in registry.PRIORS.names() if registry.PRIORS.get(n).__module__.startswith("ssl_ext."))


@pytest.mark.parametrize("name", BUILTIN_PRIORS)
@pytest.mark.parametrize("k", [1, 3, 16])
def test_every_builtin_prior_meets_the_contract(name, k, tmp_path):
    prior = build_checked_prior({"NAME": name, "PARAMS": _default_params(name, tmp_path)}, num_prototypes=k)
    assert prior.shape == (k,) and prior.dtype == torch.float64
    assert (prior > 0).all() and abs(prior.sum().item() - 1) < 1e-12
    assert (prior[1:] <= prior[:-1]).all()


@pytest.mark.parametrize("name", BUILTIN_PRIORS)
def test_builtin_priors_reject_bad_num_prototypes(name, tmp_path):
    with pytest.raises(ValueError, match="num_prototypes"):
        build_prior({"NAME": name, "PARAMS": _default_params(name, tmp_path)}, num_prototypes=0)


@register_prior("test_priors_ascending")
def _ascending_prior(num_prototypes: int) -> torch.Tensor:
    return torch.arange(1, num_prototypes + 1, dtype=torch.float64) / (num_prototypes * (num_prototypes + 1) / 2)


@register_prior("test_priors_user_list")
def _user_list_prior(num_prototypes: int, head: float = 0.5) -> list:
    return [head] + [(1 - head) / (num_prototypes - 1)] * (num_prototypes - 1)


def test_user_priors_are_checked_and_usable_by_pmsn():
    with pytest.raises(ValueError, match="descending"):
        build_checked_prior({"NAME": "test_priors_ascending"}, num_prototypes=4)
    loss = registry.build_loss({"NAME": "pmsn_loss", "PARAMS": {
        "num_prototypes": 4, "embed_dim": 2, "prior": {"NAME": "test_priors_user_list", "PARAMS": {"head": 0.7}}}})
    torch.testing.assert_close(loss.prior, torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))


def test_power_law_rejects_negative_tau():
    with pytest.raises(ValueError, match="tau"):
        build_prior({"NAME": "power_law", "PARAMS": {"tau": -1}}, num_prototypes=4)
