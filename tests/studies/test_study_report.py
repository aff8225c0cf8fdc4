"""Statistics and plan validation of the hidden-prior study report (ssl_ext/studies/hidden_prior)."""
import math

import pytest

from ssl_ext.studies.hidden_prior.plan import PlanError, load_plan
from ssl_ext.studies.hidden_prior.report import binomial_se, difference_verdict, mean_std
from ssl_ext.studies.hidden_prior.sections import _drop_table


def test_binomial_standard_error_by_hand():
    assert binomial_se(80.0, 400) == pytest.approx(100 * math.sqrt(0.8 * 0.2 / 400))
    assert math.isnan(binomial_se(80.0, 0))


def test_one_seed_uses_the_binomial_error_of_both_accuracies():
    diff, se, kind, significant = difference_verdict([84.0], [81.0], 3000, 3000)
    expected = math.hypot(binomial_se(84.0, 3000), binomial_se(81.0, 3000))
    assert diff == pytest.approx(3.0) and se == pytest.approx(expected)
    assert "binomial" in kind and significant  # 3.0 > 2 x 0.98
    assert not difference_verdict([84.0], [83.0], 3000, 3000)[3]


def test_several_seeds_use_the_paired_seed_error():
    diff, se, kind, significant = difference_verdict([84.0, 85.0, 86.0], [83.0, 83.0, 85.0], 3000, 3000)
    # paired differences 1, 2, 1: mean 4/3, sample std sqrt(1/3), SE sqrt(1/3)/sqrt(3) = 1/3
    assert diff == pytest.approx(4 / 3) and se == pytest.approx(1 / 3)
    assert "3 paired runs" in kind and significant
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_plan_merges_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("prior_study: {msn: {config: a}, pmsn: {config: b}, taus: [0.5]}\nsampler_study: {enabled: false}\n"
                    "data_subset: null\n")
    plan = load_plan(str(path), ["prior_study.epochs=3", "seeds=[1,2]"])
    assert plan["prior_study"]["epochs"] == 3 and plan["seeds"] == [1, 2]
    assert plan["data_subset"] is None
    assert plan["prior_study"]["long_tail"]["profile"] == "power_law"  # from the defaults
    with pytest.raises(PlanError, match="sampler_study needs methods"):
        load_plan(str(path), ["sampler_study.enabled=true"])
    with pytest.raises(PlanError, match="classes_per_batch must be an int >= 1"):
        load_plan(str(path), ["sampler_study.arms=[{key: a, classes_per_batch: 0}]"])
    with pytest.raises(PlanError, match=r"unknown plan key 'prior_study.tau'.*'prior_study.taus'"):
        load_plan(str(path), ["prior_study.tau=[1]"])
    with pytest.raises(PlanError, match=r"prior_study.methods\[pswav\].prior_of='swv' is not the key"):
        load_plan(str(path), ["prior_study.methods=[{key: swav, config: s}, {key: pswav, config: p, prior_of: swv}]"])
    with pytest.raises(PlanError, match="the key 'msn' is taken"):
        load_plan(str(path), ["prior_study.methods=[{key: msn, config: s}]"])
    plan = load_plan(str(path), ["prior_study.methods=[{key: swav, config: s}, {key: pswav, config: p, prior_of: swav}]"])
    assert plan["prior_study"]["methods"][1]["prior_of"] == "swav"


def test_drop_table_gives_the_seed_spread_of_the_paired_drop_next_to_the_pixel_floor():
    ref, low = {"key": "k10", "label": "K=10"}, {"key": "k1", "label": "K=1"}
    # per-seed linear top-1: K=10 80, 82, 84; K=1 79, 79, 80 -> paired drops 1, 3, 4: mean 8/3, sd sqrt(7/3)
    summary = {"mae": {"linear": {"k10": (82.0, 2.0), "k1": (79.33, 0.58)},
                       "drop": {"k1": {"linear": {"drop": 8 / 3, "se": 0.88, "sd": math.sqrt(7 / 3), "per_seed": [1, 3, 4]}}}}}
    text = _drop_table(summary, [{"key": "mae", "label": "MAE"}, {"key": "dino"}], ref, low, {"raw pixels": 83.0}, 3)
    assert "| MAE | 82.00 ± 2.00 | 79.33 ± 0.58 | +2.67 ± 1.53 | -1.00 |" in text
    assert "raw-pixel floor (83.00)" in text and "sd over seeds" in text and "dino" not in text


def test_swav_prototype_usage_is_the_mean_of_its_training_predictions():
    """The offline prototype usage (cluster analysis) of a SwAV run reads the same softmax the loss trains with."""
    import torch

    from ssl_ext.analysis.prototype_usage import prototype_module, prototype_usage
    from ssl_ext.losses.swav import SwAVLoss, mean_assignment

    torch.manual_seed(0)
    loss = SwAVLoss(num_prototypes=7, embed_dim=5, temperature=0.1)
    embeddings = torch.randn(12, 5)
    assert prototype_module(loss) is loss
    usage = prototype_usage(embeddings, loss)
    cosines = torch.nn.functional.normalize(embeddings, dim=1) @ torch.nn.functional.normalize(loss.prototypes.detach(), dim=1).T
    expected = mean_assignment([cosines], 0.1)
    assert torch.allclose(torch.as_tensor(usage["soft"]), expected.double(), atol=1e-6)
    assert usage["prior"].tolist() == [1 / 7] * 7 and usage["hard"].sum() == 12


def test_pixel_floor_of_a_method_evaluated_on_pooled_tokens_uses_the_pixels_layer():
    """The pixels floor takes the data and probes of the plan's first method; MAE's avgpool_last1 must not follow it."""
    from ssl_ext.config import compose_config
    from ssl_ext.studies.hidden_prior.runs import _pixels_run

    spec = _pixels_run({"key": "mae", "config": "study/cpu/pretrain/mae"}, "sampler", [], 0)
    cfg = compose_config([f"config={spec.config}", *spec.overrides])
    assert cfg.config.MODEL.TRUNK.NAME == "pixels" and list(cfg.config.BENCHMARK.FEATURES.LAYERS) == []
    assert dict(cfg.config.MODEL.TRUNK.PARAMS) == {"in_channels": 1, "image_size": 16}


def test_control_arm_verdict_reads_the_other_way_round():
    """MAE / data2vec (expect_drop: false): the paper predicts no drop, so a significant drop is against it."""
    from ssl_ext.studies.hidden_prior.sections import _control_verdict

    assert "as the paper predicts" in _control_verdict(0.5, significant=False)
    assert "does not predict" in _control_verdict(2.0, significant=True)
    assert "predicts no change" in _control_verdict(-2.0, significant=True)


def test_a_sampler_method_can_train_for_its_own_number_of_epochs(tmp_path):
    from ssl_ext.config import compose_config
    from ssl_ext.studies.hidden_prior.runs import build_runs
    from ssl_ext.studies.hidden_prior.study import _sampler_epochs

    path = tmp_path / "plan.yaml"
    path.write_text(
        "prior_study: {enabled: false}\ndata_subset: null\nseeds: [0]\nevaluation: {random_init_baseline: false, pixels_baseline: false}\n"
        "sampler_study:\n  epochs: 6\n  arms: [{key: k10, classes_per_batch: 10}, {key: k1, classes_per_batch: 1}]\n"
        "  methods:\n    - {key: simclr, label: SimCLR, config: study/cpu/pretrain/simclr}\n"
        "    - {key: mae, label: MAE, config: study/cpu/pretrain/mae, expect_drop: false, epochs: 60,\n"
        "       overrides: ['config.OPTIMIZER.NUM_EPOCHS=2']}\n")
    plan = load_plan(str(path), [])
    runs = {run.name: run for run in build_runs(plan, [])}
    assert sorted(runs) == ["mae_k1", "mae_k10", "simclr_k1", "simclr_k10"]
    # The composed config of each run, as the study launches it: the method's own length wins over the study's
    # and over an epochs override inside the method's own overrides.
    epochs = {name: compose_config([f"config={run.config}", *run.overrides]).config.OPTIMIZER.NUM_EPOCHS
              for name, run in runs.items()}
    assert epochs == {"mae_k1": 60, "mae_k10": 60, "simclr_k1": 6, "simclr_k10": 6}
    assert _sampler_epochs(plan["sampler_study"]) == "6 epochs (MAE: 60)"
    assert _sampler_epochs({"epochs": 6, "methods": [{"key": "simclr"}]}) == "6 epochs"
    with pytest.raises(PlanError, match=r"sampler_study.methods\[mae\].epochs must be an int >= 1, got 0"):
        load_plan(str(path), ["sampler_study.methods=[{key: mae, config: study/cpu/pretrain/mae, epochs: 0}]"])
