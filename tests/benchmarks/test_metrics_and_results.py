"""Accuracy helpers, head/medium/tail groups, low-shot subsets and the results writers, on hand-made values."""
import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ssl_ext.benchmarks.low_shot import draw_subset, fit_and_score, subset_specs
from ssl_ext.benchmarks.metrics import class_groups_for, class_groups_from_counts, classification_metrics, group_accuracy
from ssl_ext.benchmarks.results import markdown_table, write_results


def test_top1_top5_and_fewer_classes_than_five():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])
    labels = torch.tensor([1, 1, 2, 2])
    metrics = classification_metrics(scores, labels, None)
    assert metrics == {"top1": 50.0, "top5": 100.0}


def test_class_groups_thresholds_match_the_long_tail_convention():
    counts = np.array([150, 101, 100, 20, 19, 0, 5])
    assert class_groups_from_counts(counts, head_min=100, tail_max=20) == {"head": [0, 1], "medium": [2, 3], "tail": [4, 6]}
    from ssl_ext.data.long_tail import class_groups

    assert class_groups(counts, 100, 20) == class_groups_from_counts(counts, 100, 20)


def test_group_accuracy_by_hand():
    correct = torch.tensor([True, False, True, True, False, True])
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    result = group_accuracy(correct, labels, {"head": [0], "medium": [1], "tail": [2]})
    assert result == {"head": 50.0, "medium": 100.0, "tail": pytest.approx(200 / 3)}
    assert math.isnan(group_accuracy(correct, labels, {"head": [5], "medium": [], "tail": []})["head"])


def group_cfg(mode, enabled=False):
    return OmegaConf.create({"config": {
        "BENCHMARK": {"CLASS_GROUPS": mode},
        "DATA": {"TRAIN": {"LONG_TAIL": {"ENABLED": enabled, "HEAD_MIN": 100, "TAIL_MAX": 20}}},
    }})


def test_when_groups_are_reported():
    balanced = np.repeat(np.arange(3), 50)
    long_tailed = np.repeat(np.arange(3), [500, 60, 5])
    assert class_groups_for(group_cfg("auto"), balanced, 3) is None
    assert class_groups_for(group_cfg("auto"), long_tailed, 3) == {"head": [0], "medium": [1], "tail": [2]}
    assert class_groups_for(group_cfg("auto", enabled=True), balanced, 3) == {"head": [], "medium": [0, 1, 2], "tail": []}
    assert class_groups_for(group_cfg("never"), long_tailed, 3) is None
    known = {"head": [2], "medium": [], "tail": [0, 1]}
    assert class_groups_for(group_cfg("always"), balanced, 3, known=known) == known
    with pytest.raises(ValueError, match="CLASS_GROUPS"):
        class_groups_for(group_cfg("sometimes"), balanced, 3)


def test_low_shot_subsets():
    labels = np.repeat(np.arange(4), [200, 50, 3, 1])
    one_percent = draw_subset(labels, "percent", 1.0, seed=0)
    assert np.bincount(labels[one_percent]).tolist() == [2, 1, 1, 1]  # rounded, at least one per class
    five = draw_subset(labels, "per_class", 5, seed=0)
    assert np.bincount(labels[five]).tolist() == [5, 5, 3, 1]
    assert np.array_equal(draw_subset(labels, "per_class", 5, seed=0), five)
    assert not np.array_equal(draw_subset(labels, "per_class", 5, seed=1), five)
    specs = subset_specs(OmegaConf.create({"PERCENTS": [1, 12.5], "PER_CLASS": [2]}))
    assert [s[0] for s in specs] == ["1%", "12.5%", "2/class"]
    with pytest.raises(ValueError, match="PERCENTS"):
        subset_specs(OmegaConf.create({"PERCENTS": [150], "PER_CLASS": []}))


def test_logistic_regression_scores_cover_absent_classes():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    scores = fit_and_score(x, np.array([0, 0, 2, 2]), x, penalty=1e-3, max_iter=100, num_classes=3)
    assert scores.shape == (4, 3) and np.all(np.isneginf(scores[:, 1]))
    assert scores.argmax(1).tolist() == [0, 0, 2, 2]


def test_markdown_and_json_writers(tmp_path):
    rows = [{"layer": "res5", "top1": 71.234, "top1_std": 0.5, "k": 20, "head": float("nan")}]
    table = markdown_table(rows, "kNN")
    assert table.splitlines()[:4] == ["## kNN", "", "| layer | k | top1 | head |", "|---|---|---|---|"]
    assert table.splitlines()[4] == "| res5 | 20 | 71.23 ± 0.50 | – |"
    paths = write_results(str(tmp_path / "out"), {"engine": "knn", "rows": rows, "value": np.float32(1.5)}, "kNN")
    saved = json.loads(open(paths["json"]).read())
    assert saved["rows"][0]["head"] is None and saved["value"] == 1.5
    assert open(paths["markdown"]).read() == table
