"""The prior monitor hook, driven by a real PMSN loss and a minimal task object.

The task is a SimpleNamespace with the attributes the hook reads (loss, iteration,
rank, run_dir, log_metrics): the hook is what is under test, not the trainer.
"""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from registry import build_hook, build_loss
from ssl_ext.engine.output import ModelOutput
from ssl_ext.analysis.power_law import fit_exponent_mle, uniform_noise_floor
from ssl_ext.analysis.prototype_usage import usage_statistics


def make_task(loss, run_dir):
    records = []
    task = SimpleNamespace(loss=loss, iteration=0, rank=0, world_size=1, run_dir=str(run_dir), records=records,
                           last_output=None)
    task.log_metrics = lambda scalars: records.append({"iteration": task.iteration, **scalars})
    return task


def train_steps(task, hook, steps, seed=0):
    """A few real PMSN steps that update the prototypes, calling the hook like the trainer does."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(task.loss.parameters(), lr=0.5)
    for _ in range(steps):
        student = [torch.randn(16, 8, generator=g) for _ in range(2)]
        teacher = [torch.randn(16, 8, generator=g)]
        task.last_output = ModelOutput(student=student, teacher=teacher, student_views=[1, 2], teacher_views=[0])
        terms = task.loss(task.last_output, {})
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        task.iteration += 1
        hook.on_update(task)


def test_statistics_by_hand():
    p = np.array([0.5, 0.0, 0.25, 0.25])
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    stats = usage_statistics(p, prior, usage_threshold=0.1)
    assert stats["prior/entropy"] == pytest.approx(1.5 * math.log(2))
    assert stats["prior/perplexity"] == pytest.approx(2**1.5)
    assert stats["prior/prototypes_in_use"] == 3  # mass >= 0.1/4
    assert stats["prior/max_mass"] == 0.5
    kl = 0.5 * math.log(0.5 / 0.4) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.2)
    assert stats["prior/kl_sorted"] == pytest.approx(kl)


def test_power_law_exponent_is_the_analysis_estimator_with_its_uniform_floor():
    ranks = np.arange(1, 101, dtype=np.float64)
    probs = ranks**-0.7 / (ranks**-0.7).sum()
    stats = usage_statistics(probs[::-1].copy(), probs, 0.1, num_samples=400)  # order of p̄ does not matter
    assert stats["prior/tau_mle"] == pytest.approx(0.7, abs=1e-8)
    assert stats["prior/tau_mle"] == fit_exponent_mle(probs)
    assert stats["prior/prior_tau_mle"] == pytest.approx(0.7, abs=1e-8)
    assert stats["prior/tau_mle_uniform_floor"] == uniform_noise_floor(400, 100)
    assert 0 < stats["prior/tau_mle_uniform_floor"] < 0.7  # 4 samples per cluster: sorting alone looks like a power law
    assert stats["prior/kl_sorted"] == pytest.approx(0.0, abs=1e-12)
    assert stats["prior/entropy"] == pytest.approx(stats["prior/prior_entropy"])
    flat = usage_statistics(np.full(10, 0.1), np.full(10, 0.1), 0.1)
    assert flat["prior/tau_mle"] == 0.0 and "prior/tau_mle_uniform_floor" not in flat


def test_logs_at_frequency_and_plots_at_end(tmp_path):
    torch.manual_seed(0)
    loss = build_loss({"NAME": "pmsn_loss", "PARAMS": {"num_prototypes": 16, "embed_dim": 8, "temperature": 0.2,
                                                       "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.25}}}})
    hook = build_hook({"NAME": "prior_monitor", "PARAMS": {"frequency": 3, "max_curves": 3}})
    task = make_task(loss, tmp_path)
    hook.on_start(task)
    train_steps(task, hook, steps=7)
    hook.on_end(task)

    assert [r["iteration"] for r in task.records] == [1, 3, 6, 7]  # first update, every 3rd, the end
    last = task.records[-1]
    expected = usage_statistics(loss.last_mean_probs.double().numpy(), loss.prior.numpy(), 0.1, num_samples=32)
    for key, value in expected.items():
        assert last[key] == pytest.approx(value)
    assert last["prior/prior_tau_mle"] == pytest.approx(0.25, abs=1e-8)
    assert last["prior/tau_mle_uniform_floor"] == uniform_noise_floor(2 * 16, 16)  # 2 student views of 16
    assert 1 <= last["prior/prototypes_in_use"] <= 16
    assert task.records[0]["prior/entropy"] != last["prior/entropy"]  # p̄ moved during training

    png = tmp_path / "prior_monitor.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "prior_monitor.json").read_text())
    assert summary["iteration"] == 7
    # The history of every kept snapshot, not only the last one; its statistics are the logged ones.
    assert [h["iteration"] for h in summary["history"]] == [1, 3, 6, 7]
    for logged, kept in zip(task.records, summary["history"]):
        assert kept["prior/tau_mle"] == pytest.approx(logged["prior/tau_mle"])
        assert kept["prior/kl_sorted"] == pytest.approx(logged["prior/kl_sorted"])
    np.testing.assert_allclose(summary["sorted_mean_probs"], np.sort(loss.last_mean_probs.numpy())[::-1], rtol=1e-6)
    np.testing.assert_allclose(summary["prior"], loss.prior.numpy())
    assert len(hook.curves_to_plot()) == 3 and hook.curves_to_plot()[-1][0] == 7


def test_monitors_an_msn_base_inside_msbreg_and_keeps_history_across_resume(tmp_path):
    loss = build_loss({"NAME": "msbreg_loss", "PARAMS": {
        "base": {"NAME": "msn_loss", "PARAMS": {"num_prototypes": 16, "embed_dim": 8}}, "brownian_weight": 0.0}})
    hook = build_hook({"NAME": "prior_monitor", "PARAMS": {"frequency": 1, "max_curves": 2}})
    task = make_task(loss, tmp_path)
    hook.on_start(task)
    train_steps(task, hook, steps=6)
    assert len(hook.snapshots) <= 2 * 2 + 1  # thinned on long runs
    assert hook.snapshots[-1][0] == 6
    resumed = build_hook({"NAME": "prior_monitor", "PARAMS": {"frequency": 1, "max_curves": 2}})
    resumed.load_state_dict(hook.state_dict())
    assert resumed.snapshots == hook.snapshots
    assert resumed.num_samples == hook.num_samples == 32
    assert task.records[-1]["prior/prior_tau_mle"] == 0.0  # MSN: uniform


def test_needs_a_prototype_loss(tmp_path):
    hook = build_hook({"NAME": "prior_monitor"})
    with pytest.raises(ValueError, match="simclr|SimCLR"):
        hook.on_start(make_task(build_loss({"NAME": "simclr_loss"}), tmp_path))
    with pytest.raises(ValueError, match="frequency"):
        build_hook({"NAME": "prior_monitor", "PARAMS": {"frequency": 0}})
    with pytest.raises(ValueError, match="plot_name"):
        build_hook({"NAME": "prior_monitor", "PARAMS": {"plot_name": "plot.jpg"}})
