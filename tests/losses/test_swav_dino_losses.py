"""SwAV, DINO and their prior-matching variants: hand-computable values, lightly 1.6.0 agreement in
float64, uniform prior == original, the state a checkpoint must carry, and argument errors."""
from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output

UNIFORM = {"NAME": "uniform"}


def test_documented_examples_run():
    import ssl_ext.losses.data2vec
    import ssl_ext.losses.dino
    import ssl_ext.losses.mae
    import ssl_ext.losses.swav

    for module in (ssl_ext.losses.swav, ssl_ext.losses.dino, ssl_ext.losses.mae, ssl_ext.losses.data2vec):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def _views(count, n=6, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=g, dtype=torch.float64) for _ in range(count)]


def _swav(**params):
    base = {"num_prototypes": 5, "embed_dim": 4, "temperature": 0.2, "epsilon": 0.1}
    return build_loss({"NAME": "swav_loss", "PARAMS": {**base, **params}}).double()


# ---------------------------------------------------------------------------------------------- SwAV
def test_swav_value_by_hand_on_two_orthogonal_views():
    # Embeddings equal to the two prototypes: codes are (nearly) one-hot on the matching prototype,
    # so each view's loss is -log softmax(cos / T) at the matching prototype = log(1 + e^(-1/T)).
    loss = build_loss({"NAME": "swav_loss", "PARAMS": {"num_prototypes": 2, "embed_dim": 2, "temperature": 1.0,
                                                       "epsilon": 0.05}}).double()
    with torch.no_grad():
        loss.prototypes.copy_(torch.eye(2))
    z = torch.eye(2, dtype=torch.float64)
    value = loss(make_output([z, z.clone()]), {})["loss"]
    assert float(value) == pytest.approx(math.log(1 + math.exp(-1.0)), rel=1e-6)


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_matches_lightly_value_and_gradients(with_queue):
    from lightly.loss import SwaVLoss as LightlySwaV

    views = _views(4)
    ours = _swav(queue_length=12 if with_queue else 0)
    if with_queue:
        with torch.no_grad():
            ours.queue.copy_(torch.randn(ours.queue.shape, dtype=torch.float64))
            ours.queue.copy_(F.normalize(ours.queue, dim=-1))
            ours.queue_rows.fill_(12)
    queue_before = ours.queue.clone()  # the forward pass pushes this batch into the queue afterwards
    inputs = [v.clone().requires_grad_(True) for v in views]
    value = ours(make_output(inputs), {})["loss"]
    value.backward()

    reference_inputs = [v.clone().requires_grad_(True) for v in views]
    prototypes = ours.prototypes.detach().clone().requires_grad_(True)
    weights = F.normalize(prototypes, dim=1)
    scores = [F.normalize(v, dim=1) @ weights.T for v in reference_inputs]
    queue_scores = [q @ weights.detach().T for q in queue_before] if with_queue else None
    lightly = LightlySwaV(temperature=0.2, sinkhorn_iterations=3, sinkhorn_epsilon=0.1)
    expected = lightly(scores[:2], scores[2:], queue_scores)
    expected.backward()
    assert float(value) == pytest.approx(float(expected), rel=1e-12)
    for ours_input, reference in zip(inputs, reference_inputs):
        torch.testing.assert_close(ours_input.grad, reference.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.prototypes.grad, prototypes.grad, rtol=1e-10, atol=1e-12)


def test_pswav_with_uniform_prior_is_swav():
    views = _views(4, seed=3)
    swav, pswav = _swav(), build_loss({"NAME": "pswav_loss", "PARAMS": {
        "num_prototypes": 5, "embed_dim": 4, "temperature": 0.2, "epsilon": 0.1, "prior": UNIFORM}}).double()
    pswav.load_state_dict(swav.state_dict())
    results = []
    for loss in (swav, pswav):
        inputs = [v.clone().requires_grad_(True) for v in views]
        terms = loss(make_output(inputs), {})
        terms["loss"].backward()
        results.append((terms, [x.grad for x in inputs], loss.prototypes.grad))
    (a, ga, pa), (b, gb, pb) = results
    assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-14, abs=1e-15)
    for x, y in zip(ga + [pa], gb + [pb]):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_pswav_codes_give_prototypes_the_prior_mass():
    from ssl_ext.losses.swav import swav_codes

    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    scores = torch.randn(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    codes = swav_codes(scores, epsilon=0.5, iterations=200, prototype_marginals=prior)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(60, dtype=torch.float64))
    torch.testing.assert_close(codes.mean(dim=0), prior, rtol=1e-6, atol=1e-8)


def test_swav_freezes_prototypes_then_trains_them_and_checkpoints_the_counter():
    loss = _swav(freeze_prototypes_steps=2)
    views = _views(4)
    grads = []
    for _ in range(3):
        loss.prototypes.grad = None
        loss(make_output([v.clone().requires_grad_(True) for v in views]), {})["loss"].backward()
        grads.append(loss.prototypes.grad.abs().sum().item())
    assert grads[0] == 0 and grads[1] == 0 and grads[2] > 0
    assert int(loss.state_dict()["steps"]) == 3


def test_swav_queue_fills_from_its_start_step_is_used_once_full_and_resumes():
    loss = _swav(queue_length=12, queue_start_step=1)
    batches = [_views(4, seed=s) for s in range(5)]
    used = []
    for step, views in enumerate(batches[:3]):
        used.append(float(loss(make_output(views), {})["queue_used"]))
    assert used == [0.0, 0.0, 0.0]  # step 0 enqueues nothing; steps 1, 2 fill 12 rows
    assert int(loss.queue_rows) == 12
    torch.testing.assert_close(loss.queue[0, :6], F.normalize(batches[2][0], dim=1))
    resumed = _swav(queue_length=12, queue_start_step=1)
    resumed.load_state_dict(loss.state_dict())
    for views in batches[3:]:
        a, b = loss(make_output(views), {}), resumed(make_output(views), {})
        assert float(a["queue_used"]) == 1.0
        assert torch.equal(a["loss"], b["loss"])


# ---------------------------------------------------------------------------------------------- DINO
def _dino(name="dino_loss", **params):
    base = {"out_dim": 4, "teacher_temperature": 0.07, "student_temperature": 0.1, "center_momentum": 0.9}
    return build_loss({"NAME": name, "PARAMS": {**base, **params}}).double()


def test_dino_matches_lightly_over_two_steps_with_the_center():
    from lightly.loss import DINOLoss as LightlyDINO

    # lightly holds the teacher temperature in a float32 tensor: 1/16 is exact in float32, 0.07 is not.
    ours = _dino(teacher_temperature=0.0625)
    lightly = LightlyDINO(output_dim=4, teacher_temp=0.0625, warmup_teacher_temp=0.0625, student_temp=0.1,
                          center_momentum=0.9).double()
    for seed in (0, 1):
        students = _views(4, seed=seed)
        teachers = _views(2, seed=seed + 10)
        inputs = [s.clone().requires_grad_(True) for s in students]
        value = ours(make_output(inputs, teachers), {})["loss"]
        value.backward()
        reference = [s.clone().requires_grad_(True) for s in students]
        expected = lightly(teachers, reference)
        expected.backward()
        assert float(value) == pytest.approx(float(expected), rel=1e-12)
        for a, b in zip(inputs, reference):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(ours.center, lightly.center.reshape(-1), rtol=1e-12, atol=1e-14)


def test_dino_value_by_hand():
    # One teacher view (view 0), one other student view: H(teacher, student) with a zero center.
    loss = _dino(out_dim=2, teacher_temperature=1.0, student_temperature=1.0)
    teacher = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # softmax = (1/4, 3/4)
    student = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # softmax = (1/2, 1/2)
    value = loss(make_output([student.clone(), student], [teacher]), {})["ce"]
    assert float(value) == pytest.approx(math.log(2.0))
    # The center moved to 0.1 * the teacher mean; the step counter advanced.
    torch.testing.assert_close(loss.center, 0.1 * teacher[0])
    assert int(loss.steps) == 1


def test_dino_teacher_temperature_warms_up_linearly_then_stays():
    loss = _dino(warmup_teacher_temperature=0.04, teacher_temperature=0.07, warmup_teacher_temperature_steps=3)
    seen = []
    for _ in range(5):
        seen.append(float(loss(make_output(_views(2), _views(2)), {})["teacher_temperature"]))
    assert seen == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07])


@pytest.mark.parametrize("weight", [0.0, 0.7])
@pytest.mark.parametrize("prior_centering", [True, False])
def test_pdino_with_uniform_prior_is_dino(weight, prior_centering):
    dino = _dino(regularization_weight=weight)
    pdino = _dino("pdino_loss", regularization_weight=weight, prior=UNIFORM, prior_centering=prior_centering)
    students, teachers = _views(4, seed=5), _views(2, seed=6)
    with torch.no_grad():
        dino.center.copy_(torch.randn(4, dtype=torch.float64))
        pdino.center.copy_(dino.center)
    results = []
    for loss in (dino, pdino):
        inputs = [s.clone().requires_grad_(True) for s in students]
        terms = loss(make_output(inputs, teachers), {})
        terms["loss"].backward()
        results.append((terms, [x.grad for x in inputs]))
    (a, ga), (b, gb) = results
    assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-13)
    if weight > 0:
        assert float(b["kl_prior"]) == pytest.approx(float(a["me_max"]), rel=1e-10, abs=1e-14)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(dino.center, pdino.center)


def test_pdino_power_law_prior_tilts_targets_and_penalizes_the_mean_prediction():
    prior = {"NAME": "power_law", "PARAMS": {"tau": 1.0}}
    loss = _dino("pdino_loss", prior=prior, regularization_weight=1.0)
    uniform_students = [torch.zeros(3, 4, dtype=torch.float64) for _ in range(2)]
    terms = loss(make_output(uniform_students, [torch.zeros(3, 4, dtype=torch.float64)]), {})
    pi = loss.prior
    # p̄ is uniform: KL(uniform ‖ π) by hand; the zero-logit teacher predicts π itself.
    expected = float((0.25 * (torch.log(torch.tensor(0.25, dtype=torch.float64)) - pi.log())).sum())
    assert float(terms["kl_prior"]) == pytest.approx(expected)
    assert float(terms["ce"]) == pytest.approx(float(-(pi * math.log(0.25)).sum()))


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name, params, message", [
    ("swav_loss", {"epsilon": 0}, "epsilon must be > 0"),
    ("swav_loss", {"code_views": [0, 0]}, "distinct view positions"),
    ("swav_loss", {"num_prototypes": 2.5}, "num_prototypes must be an integer"),
    ("pswav_loss", {"prior": {"NAME": "uniformm"}}, "Unknown prior"),
    ("dino_loss", {"center_momentum": 1.5}, "center_momentum must be"),
    ("dino_loss", {"warmup_teacher_temperature_steps": -1}, "warmup_teacher_temperature_steps must be"),
    ("pdino_loss", {"prior_centering": "yes"}, "prior_centering must be true or false"),
    ("mae_loss", {"norm_pix_loss": 1}, "norm_pix_loss must be true or false"),
    ("data2vec_loss", {"block_norm": "batch"}, "block_norm must be one of"),
    ("data2vec_loss", {"beta": -1.0}, "beta must be >= 0"),
])
def test_bad_arguments_raise_value_errors_naming_them(name, params, message):
    with pytest.raises((ValueError, KeyError), match=message):
        build_loss({"NAME": name, "PARAMS": params})


def test_swav_and_dino_name_the_width_to_fix():
    with pytest.raises(ValueError, match="LOSS.PARAMS.embed_dim"):
        _swav()(make_output(_views(2, dim=3)), {})
    with pytest.raises(ValueError, match="LOSS.PARAMS.out_dim"):
        _dino()(make_output(_views(2, dim=3), _views(2, dim=3)), {})
    with pytest.raises(ValueError, match="code_views"):
        _swav(code_views=[0, 5])(make_output(_views(2)), {})


def test_new_methods_have_full_scale_and_cpu_tiny_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs_yaml" / "pretrain"
    for method in ("swav", "pswav", "dino", "pdino", "mae", "data2vec"):
        names = sorted(p.stem for p in (root / method).glob("*.yaml"))
        assert f"{method}_cpu_tiny" in names, method
        assert any(not n.endswith("_cpu_tiny") for n in names), method
