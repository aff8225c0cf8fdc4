"""SwAV (codes, queue), DINO (center), their prior variants, MAE and data2vec on 2 gloo processes with
half the global batch each == 1 process with the whole batch (the pattern of
test_distributed_losses.py): same loss on every rank, a rank's input gradient = world_size x the
single-process gradient of its rows, DDP-averaged parameter gradients = single-process ones, and
the state a checkpoint carries (DINO's center, SwAV's queue) identical on every rank and to the
single process."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output, run_on_gloo_ranks

WORLD_SIZE = 2
N = 8


def _cases():
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def views(count, dim=5):
        return [randn(N, dim) for _ in range(count)]

    swav = {"num_prototypes": 6, "embed_dim": 5, "temperature": 0.2, "epsilon": 0.1, "queue_length": 8}
    dino = {"out_dim": 5, "teacher_temperature": 0.05, "regularization_weight": 0.3}
    mask = torch.rand(N, 4, generator=g) < 0.5
    mask[:, 0] = True
    return {
        "swav_queue": dict(spec={"NAME": "swav_loss", "PARAMS": swav}, student=views(4), teacher=None,
                           fill_queue=True),
        "pswav": dict(spec={"NAME": "pswav_loss", "PARAMS": {**swav, "queue_length": 0,
                                                           "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.5}}}},
                      student=views(4), teacher=None),
        "dino": dict(spec={"NAME": "dino_loss", "PARAMS": dino}, student=views(4), teacher=views(2)),
        "pdino": dict(spec={"NAME": "pdino_loss", "PARAMS": {**dino, "prior": {"NAME": "power_law",
                                                                             "PARAMS": {"tau": 0.5}}}},
                      student=views(4), teacher=views(2)),
        "mae": dict(spec={"NAME": "mae_loss", "PARAMS": {"patch_size": 2}}, student=[randn(N, 16)], teacher=None,
                    batch={"views": [randn(N, 1, 4, 4)]}, mask=mask),
        "data2vec": dict(spec={"NAME": "data2vec_loss", "PARAMS": {}}, student=[randn(N, 5, 3)],
                         teacher=[randn(N, 2, 4, 3)], mask=mask),
    }


def _build(case):
    loss = build_loss(case["spec"]).to(torch.float64)
    if case.get("state") is not None:
        loss.load_state_dict(case["state"])
    return loss


def _rows(tensors, rank, world_size):
    if tensors is None:
        return None
    n = tensors[0].shape[0] // world_size
    return [t[rank * n : (rank + 1) * n] for t in tensors]


def _forward_backward(loss, case, rank=0, world_size=1):
    student = [s.clone().requires_grad_(True) for s in _rows(case["student"], rank, world_size)]
    teacher = _rows(case["teacher"], rank, world_size)
    extras = {} if case.get("mask") is None else {"student_patch_mask": _rows([case["mask"]], rank, world_size)}
    batch = {} if case.get("batch") is None else {"views": _rows(case["batch"]["views"], rank, world_size)}
    terms = loss(make_output(student, teacher, extras), batch)
    terms["loss"].backward()
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    return (
        {k: float(v.detach()) for k, v in terms.items()},
        [s.grad for s in student],
        {n: p.grad.clone() for n, p in loss.named_parameters() if p.grad is not None},
        state,
    )


def _worker(rank, world_size, cases_path, out_dir):
    cases = torch.load(cases_path, weights_only=False)
    results = {name: _forward_backward(_build(case), case, rank, world_size) for name, case in cases.items()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist_new_losses")
    cases = _cases()
    for case in cases.values():
        loss = _build(case)
        if case.get("fill_queue"):  # a full queue, so the codes are balanced over batch + queue
            with torch.no_grad():
                loss.queue.copy_(F.normalize(torch.randn(loss.queue.shape, dtype=torch.float64), dim=-1))
                loss.queue_rows.fill_(loss.queue_length)
        if "center" in dict(loss.named_buffers()):
            with torch.no_grad():
                loss.center.copy_(torch.randn(loss.center.shape, dtype=torch.float64))
        case["state"] = loss.state_dict()
    torch.save(cases, tmp / "cases.pt")
    run_on_gloo_ranks(_worker, WORLD_SIZE, str(tmp / "cases.pt"), str(tmp))
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    return cases, ranks


@pytest.mark.parametrize("case_name", sorted(_cases()))
def test_two_ranks_match_one_process(distributed_results, case_name):
    cases, ranks = distributed_results
    case = cases[case_name]
    terms, grads, param_grads, state = _forward_backward(_build(case), case)
    for rank, results in enumerate(ranks):
        rank_terms, rank_grads, _, rank_state = results[case_name]
        assert rank_terms.keys() == terms.keys()
        for key, value in terms.items():
            assert rank_terms[key] == pytest.approx(value, rel=1e-10, abs=1e-12), (case_name, rank, key)
        for view, (full, local) in enumerate(zip(_rows(grads, rank, WORLD_SIZE), rank_grads)):
            torch.testing.assert_close(local, WORLD_SIZE * full, rtol=1e-9, atol=1e-12, msg=f"{case_name} view {view}")
        for key, value in state.items():  # what rank 0's checkpoint carries is every rank's and the 1-process state
            torch.testing.assert_close(rank_state[key], value, rtol=1e-12, atol=1e-14, msg=f"{case_name} {key}")
    for name, full in param_grads.items():
        ddp_average = sum(results[case_name][2][name] for results in ranks) / WORLD_SIZE
        torch.testing.assert_close(ddp_average, full, rtol=1e-9, atol=1e-12, msg=f"{case_name} {name}")
