"""The synthetic and digits sources: real data, right labels, deterministic splits."""
import numpy as np
import pytest

from registry import build_data_source


def build(name, split="train", **params):
    return build_data_source({"NAME": name, "PARAMS": params}, split=split, data_path="", dataset_name="", skip_corrupt=False)


def test_digits_pixels_and_labels_match_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, val = build("digits", "train", image_size=8), build("digits", "val", image_size=8)
    assert len(train) + len(val) == 1797
    assert set(train.source_indices).isdisjoint(val.source_indices)
    for ds in (train, val):
        for i in range(0, len(ds), 37):
            image, label = ds[i]
            original = ds.source_indices[i]
            assert image.mode == "L" and image.size == (8, 8)
            assert label == bunch.target[original]
            np.testing.assert_array_equal(np.asarray(image), np.round(bunch.images[original] * 255 / 16).astype(np.uint8))


def test_digits_split_is_stratified_and_fixed():
    train = build("digits", "train")
    again = build("digits", "train")
    assert again.targets == train.targets
    counts = np.bincount(train.targets, minlength=10)
    full = np.bincount(build("digits", "val").targets, minlength=10) + counts
    # 80% of every class, up to rounding.
    assert np.all(np.abs(counts - 0.8 * full) <= 1)
    image, _ = train[0]
    assert image.size == (32, 32) and train.num_classes == 10


@pytest.mark.parametrize("bad", [{"train_fraction": 1.5}, {"image_size": 4}, {"split_seed": -1}])
def test_digits_rejects_bad_params(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build("digits", **bad)


def test_digits_rejects_unknown_split_and_path():
    with pytest.raises(ValueError, match="split"):
        build("digits", "test")
    with pytest.raises(ValueError, match="data_path"):
        build_data_source({"NAME": "digits"}, split="train", data_path="/x", dataset_name="", skip_corrupt=False)


def test_synthetic_is_deterministic_and_splits_differ():
    a, b = build("synthetic", "train", num_images=40, num_classes=4, image_size=12), build(
        "synthetic", "train", num_images=40, num_classes=4, image_size=12
    )
    val = build("synthetic", "val", num_images=40, num_classes=4, image_size=12)
    assert a.targets == b.targets
    assert np.bincount(a.targets).tolist() == [10, 10, 10, 10]
    np.testing.assert_array_equal(np.asarray(a[5][0]), np.asarray(b[5][0]))
    assert not np.array_equal(np.asarray(a[5][0]), np.asarray(val[5][0]))
    assert a[5][0].size == (12, 12) and a[5][0].mode == "RGB"
    gray = build("synthetic", "train", num_images=3, channels=1, image_size=5)
    assert gray[0][0].mode == "L" and gray[0][0].size == (5, 5)


def test_synthetic_classes_are_learnable():
    """Nearest class mean (fitted on train) classifies val far above chance (1/8)."""
    params = dict(num_images=160, num_classes=8, image_size=8)
    train, val = build("synthetic", "train", **params), build("synthetic", "val", **params)

    def arrays(ds):
        return np.stack([np.asarray(ds[i][0], dtype=np.float32).ravel() for i in range(len(ds))]), np.array(ds.targets)

    xt, yt = arrays(train)
    xv, yv = arrays(val)
    means = np.stack([xt[yt == c].mean(0) for c in range(8)])
    predicted = np.argmin(((xv[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == yv).mean() > 0.9


@pytest.mark.parametrize("bad", [{"num_images": 0}, {"channels": 2}, {"noise_std": -1.0}])
def test_synthetic_rejects_bad_params(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        build("synthetic", **bad)
