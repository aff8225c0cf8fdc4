"""Long-tailed subsets: histograms follow the profile and ratio; groups; histogram JSON; real data."""
import json

import numpy as np
import pytest

from registry import build_data_source
from ssl_ext.data.long_tail import class_groups, long_tail_class_sizes, make_long_tailed, write_class_histogram


class Labelled:
    def __init__(self, targets, num_classes=None):
        self.targets = list(map(int, targets))
        self.num_classes = num_classes or max(self.targets) + 1

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return f"image-{index}", self.targets[index]


CIFAR10_LIKE = Labelled(np.repeat(np.arange(10), 5000))


def test_exponential_profile_reproduces_cifar10_lt():
    """CIFAR-10-LT with ratio 100 (Cao et al.'s LDAM release) keeps these counts."""
    lt = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, seed=0)
    assert lt.class_counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert len(lt) == sum(lt.class_counts) == 12406


@pytest.mark.parametrize("profile", ["exponential", "power_law"])
@pytest.mark.parametrize("ratio", [10.0, 100.0])
def test_histogram_follows_profile_and_ratio(profile, ratio):
    counts = make_long_tailed(CIFAR10_LIKE, profile, ratio, seed=1).class_counts
    i = np.arange(10)
    shape = ratio ** (-i / 9) if profile == "exponential" else (i + 1.0) ** (-np.log(ratio) / np.log(10))
    assert np.all(np.abs(counts - 5000 * shape) < 1)  # floor of the profile
    assert counts[0] / counts[-1] == pytest.approx(ratio, rel=0.01)
    assert np.all(np.diff(counts) <= 0)


def test_power_law_puts_more_classes_near_the_tail_than_exponential():
    exp = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, 0).class_counts
    power = make_long_tailed(CIFAR10_LIKE, "power_law", 100.0, 0).class_counts
    assert exp[0] == power[0] and exp[-1] == power[-1]
    assert np.all(power[1:-1] < exp[1:-1])  # falls faster at the head, so more classes sit near the tail size


def test_subset_is_seeded_and_labels_come_along():
    a = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, seed=3)
    b = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, seed=3)
    c = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, seed=4)
    assert a.indices == b.indices and a.indices != c.indices
    assert a.class_counts.tolist() == c.class_counts.tolist()
    assert len(set(a.indices)) == len(a)
    for k in (0, 100, len(a) - 1):
        item, label = a[k]
        assert item == f"image-{a.indices[k]}" and label == CIFAR10_LIKE.targets[a.indices[k]] == a.targets[k]


def test_random_class_order_and_head_size():
    lt = make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, seed=0, class_order="random", head_size=1000)
    order = lt.settings["class_order"]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert lt.class_counts[order].tolist() == long_tail_class_sizes(10, 1000, "exponential", 10.0).tolist()
    with pytest.raises(ValueError, match="head_size"):
        make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, head_size=6000)


def test_uneven_source_uses_its_smallest_class_as_head():
    source = Labelled(np.repeat(np.arange(4), [50, 300, 20, 80]))
    lt = make_long_tailed(source, "exponential", 20.0, seed=0)
    assert lt.class_counts.tolist() == long_tail_class_sizes(4, 20, "exponential", 20.0).tolist() == [20, 7, 2, 1]


def test_class_groups_thresholds_are_inat_style():
    counts = np.array([101, 100, 50, 20, 19, 1, 0])
    groups = class_groups(counts, head_min=100, tail_max=20)
    assert groups == {"head": [0], "medium": [1, 2, 3], "tail": [4, 5]}  # the empty class 6 is in none
    assert class_groups(counts, 10, 5) == {"head": [0, 1, 2, 3, 4], "medium": [], "tail": [5]}
    with pytest.raises(ValueError, match="TAIL_MAX"):
        class_groups(counts, 10, 50)


def test_histogram_json_in_run_dir(tmp_path):
    lt = make_long_tailed(CIFAR10_LIKE, "exponential", 100.0, seed=0)
    path = lt.write_histogram(str(tmp_path), head_min=1000, tail_max=100)
    record = json.loads(open(path).read())
    assert path == str(tmp_path / "class_histogram.json")
    assert record["class_counts"] == lt.class_counts.tolist() and record["num_images"] == 12406
    assert record["imbalance_ratio"] == 100.0
    assert record["groups"] == {"head": [0, 1, 2, 3], "medium": [4, 5, 6, 7], "tail": [8, 9]}
    assert record["long_tail"]["profile"] == "exponential" and record["long_tail"]["seed"] == 0
    # Any labelled dataset can record its histogram too.
    plain = json.loads(open(write_class_histogram(CIFAR10_LIKE, str(tmp_path / "plain"))).read())
    assert plain["class_counts"] == [5000] * 10 and plain["long_tail"] is None


@pytest.mark.parametrize("kwargs,match", [({"profile": "zipf"}, "PROFILE"), ({"imbalance_ratio": 0.5}, "IMBALANCE_RATIO"),
                                          ({"seed": -1}, "SEED"), ({"class_order": "size"}, "CLASS_ORDER")])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_long_tailed(CIFAR10_LIKE, **{"profile": "exponential", "imbalance_ratio": 10.0, **kwargs})


def test_long_tailed_digits_real_images():
    digits = build_data_source({"NAME": "digits", "PARAMS": {"image_size": 8}}, split="train", data_path="",
                               dataset_name="", skip_corrupt=False)
    lt = make_long_tailed(digits, "power_law", 10.0, seed=0)
    head = int(np.bincount(digits.targets).min())
    assert lt.class_counts[0] == head and lt.class_counts[-1] == int(head / 10)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for k in range(0, len(lt), 41):
        image, label = lt[k]
        original = digits.source_indices[lt.indices[k]]
        assert label == bunch.target[original]
        assert np.array_equal(np.asarray(image), np.round(bunch.images[original] * 255 / 16).astype(np.uint8))


def test_class_order_random_index_and_explicit():
    """random draws the head from its own seed (the kept images from SEED); index makes label 0 the head;
    an explicit order (list or the comma-separated string a YAML key holds) is followed exactly."""
    by_seed = {s: make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, seed=0, head_size=100, class_order="random",
                                   class_order_seed=s).settings["class_order"] for s in range(4)}
    assert all(sorted(o) == list(range(10)) for o in by_seed.values()) and len({tuple(o) for o in by_seed.values()}) == 4
    again = make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, seed=5, head_size=100, class_order="random", class_order_seed=2)
    assert again.settings["class_order"] == by_seed[2]  # the order does not depend on the image seed
    index = make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, seed=0, head_size=100, class_order="index")
    assert index.class_counts.tolist() == long_tail_class_sizes(10, 100, "exponential", 10.0).tolist()
    for explicit in ([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], "9,8,7,6,5,4,3,2,1,0"):
        lt = make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, seed=0, head_size=100, class_order=explicit)
        assert lt.class_counts.tolist() == index.class_counts.tolist()[::-1]
    with pytest.raises(ValueError, match="every class with images exactly once"):
        make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, class_order="1,2,3")
    with pytest.raises(ValueError, match="CLASS_ORDER must be random, index"):
        make_long_tailed(CIFAR10_LIKE, "exponential", 10.0, class_order="sorted")


def test_config_order_seed_and_catalog_thresholds(tmp_path):
    """The config's LONG_TAIL section reaches the subset; head/medium/tail thresholds come from the dataset's
    catalog entry unless the config sets them, and a user catalog can change a dataset's thresholds."""
    from omegaconf import OmegaConf

    from ssl_ext.data.catalog import add_catalog_file, clear_user_catalogs
    from ssl_ext.data.long_tail import group_thresholds, long_tailed_from_config

    split = OmegaConf.create({"DATA_SOURCES": ["digits"], "DATASET_NAMES": [""], "LONG_TAIL": {
        "ENABLED": True, "PROFILE": "exponential", "IMBALANCE_RATIO": 10.0, "SEED": 0, "HEAD_SIZE": 100,
        "CLASS_ORDER": "random", "CLASS_ORDER_SEED": 3, "HEAD_MIN": -1, "TAIL_MAX": -1}})
    lt = long_tailed_from_config(CIFAR10_LIKE, split)
    assert lt.settings["class_order_seed"] == 3 and lt.class_counts.max() == 100
    assert group_thresholds(split) == (100, 20) and lt.thresholds() == (100, 20)  # catalog entry "digits"
    split.LONG_TAIL.TAIL_MAX = 30
    assert group_thresholds(split) == (100, 30)
    split.LONG_TAIL.TAIL_MAX = -1
    (tmp_path / "mine.yaml").write_text("digits:\n  class_groups: {head_min: 50, tail_max: 15}\n")
    try:
        add_catalog_file(str(tmp_path / "mine.yaml"))
        assert group_thresholds(split) == (50, 15)
        (tmp_path / "bad.yaml").write_text("digits:\n  class_groups: {head_min: 5, tail_max: 15}\n")
        with pytest.raises(ValueError, match="bad.yaml.*digits.class_groups"):
            add_catalog_file(str(tmp_path / "bad.yaml"))
    finally:
        clear_user_catalogs()
