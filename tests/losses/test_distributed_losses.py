"""2 gloo processes with half the global batch each == 1 process with the whole batch.

What is asserted, per loss:
* every rank reports the same loss terms as the single process (global statistics);
* a rank's gradient w.r.t. its local embedding rows equals ``world_size`` times the
  single-process gradient of those rows. Every rank back-propagates its own copy of
  the *global* loss and the all-gather/all-reduce backward sums those copies, hence
  the factor; DDP's averaging over ranks then yields exactly the single-process
  gradient of the parameters that produced the rows;
* gradients of parameters owned by the loss (MSN prototypes) averaged over ranks
  (what DDP does) equal the single-process gradient.

One spawn runs every case to keep the suite fast.
"""
from __future__ import annotations

import os

import pytest
import torch

from registry import build_loss
from loss_testing import make_output, run_on_gloo_ranks

WORLD_SIZE = 2
GLOBAL_BATCH = 8


def _cases():
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def views(count, dim=5):
        return [randn(GLOBAL_BATCH, dim) for _ in range(count)]

    prototypes = {"num_prototypes": 6, "embed_dim": 5, "temperature": 0.3, "anchor_entropy_weight": 0.2}
    return {
        "simclr": dict(spec={"NAME": "simclr_loss", "PARAMS": {"temperature": 0.3}}, student=views(2), teacher=None),
        "msn": dict(spec={"NAME": "msn_loss", "PARAMS": prototypes}, student=views(3), teacher=views(1)),
        "pmsn": dict(
            spec={"NAME": "pmsn_loss", "PARAMS": {**prototypes, "sinkhorn_prior": True, "label_smoothing": 0.1,
                                                  "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.5}}}},
            student=views(3),
            teacher=views(1),
        ),
        "vicreg": dict(spec={"NAME": "vicreg_loss", "PARAMS": {}}, student=views(2), teacher=None),
        "singular_value": dict(spec={"NAME": "singular_value_loss", "PARAMS": {"center": True}}, student=views(2),
                               teacher=None),
        "byol": dict(spec={"NAME": "byol_loss", "PARAMS": {}}, student=views(2), teacher=views(2)),
        "multiview_centroid": dict(spec={"NAME": "multiview_centroid_loss", "PARAMS": {}}, student=views(4),
                                   teacher=views(4)),
        # Brownian noise is drawn per rank, so it has no single-process twin: weight 0 here.
        "msbreg_on_simclr": dict(
            spec={"NAME": "msbreg_loss", "PARAMS": {"base": {"NAME": "simclr_loss"}, "singular_value_weight": 0.5,
                                                    "brownian_weight": 0.0}},
            student=views(2),
            teacher=None,
        ),
    }


def _run_case(case):
    loss = build_loss(case["spec"]).to(torch.float64)
    if case.get("state") is not None:
        loss.load_state_dict(case["state"])
    return loss


def _forward_backward(loss, student, teacher):
    student = [s.clone().requires_grad_(True) for s in student]
    terms = loss(make_output(student, teacher), {})
    terms = terms if isinstance(terms, dict) else {"loss": terms}
    terms["loss"].backward()
    return (
        {k: float(v.detach()) for k, v in terms.items()},
        [s.grad for s in student],
        {n: p.grad.clone() for n, p in loss.named_parameters() if p.grad is not None},
    )


def _rank_rows(tensors, rank, world_size):
    if tensors is None:
        return None
    n = tensors[0].shape[0] // world_size
    return [t[rank * n : (rank + 1) * n] for t in tensors]


def _worker(rank, world_size, cases_path, out_dir):
    torch.manual_seed(1234)
    cases = torch.load(cases_path, weights_only=False)
    results = {}
    for name, case in cases.items():
        loss = _run_case(case)
        results[name] = _forward_backward(
            loss, _rank_rows(case["student"], rank, world_size), _rank_rows(case["teacher"], rank, world_size)
        )
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist_losses")
    cases = _cases()
    for case in cases.values():  # same loss parameters (e.g. prototypes) in every process
        case["state"] = _run_case(case).state_dict()
    torch.save(cases, tmp / "cases.pt")
    run_on_gloo_ranks(_worker, WORLD_SIZE, str(tmp / "cases.pt"), str(tmp))
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    return cases, ranks


@pytest.mark.parametrize("case_name", sorted(_cases()))
def test_two_ranks_match_one_process(distributed_results, case_name):
    cases, ranks = distributed_results
    case = cases[case_name]
    terms, grads, param_grads = _forward_backward(_run_case(case), case["student"], case["teacher"])
    for rank, results in enumerate(ranks):
        rank_terms, rank_grads, _ = results[case_name]
        assert rank_terms.keys() == terms.keys()
        for key, value in terms.items():
            assert rank_terms[key] == pytest.approx(value, rel=1e-10, abs=1e-12), (case_name, rank, key)
        for view, (full, local) in enumerate(zip(_rank_rows(grads, rank, WORLD_SIZE), rank_grads)):
            torch.testing.assert_close(local, WORLD_SIZE * full, rtol=1e-9, atol=1e-12, msg=f"{case_name} view {view}")
    for name, full in param_grads.items():
        ddp_average = sum(results[case_name][2][name] for results in ranks) / WORLD_SIZE
        torch.testing.assert_close(ddp_average, full, rtol=1e-9, atol=1e-12, msg=f"{case_name} {name}")
