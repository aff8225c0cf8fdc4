"""Statistics and plan validation of the hidden-prior study report (ssl_ext/studies/hidden_prior)."""
import math

import pytest

from ssl_ext.studies.hidden_prior.plan import PlanError, load_plan
from ssl_ext.studies.hidden_prior.report import binomial_se, difference_verdict, mean_std


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
    assert "3 seeds" in kind and significant
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
