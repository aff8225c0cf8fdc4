"""fashion_mnist (Debian's gzipped IDX files) and torchvision_dataset (local root, never downloads).

The real-data tests need Debian's dataset-fashion-mnist package (the README's test
set-up installs it as root); in CI it must be there, elsewhere they skip without it.
"""
import gzip
import os
import shutil

import numpy as np
import pytest

from registry import build_data_source

FM_ROOT = "/usr/share/datasets/fashion-mnist"
HAVE_FM = os.path.exists(os.path.join(FM_ROOT, "t10k-labels-idx1-ubyte.gz"))
needs_fashion_mnist = pytest.mark.skipif(
    not HAVE_FM and not os.environ.get("CI"), reason="apt-get install dataset-fashion-mnist (as root) to run"
)


def build(name, split="train", data_path="", **params):
    return build_data_source({"NAME": name, "PARAMS": params}, split=split, data_path=data_path, dataset_name="",
                             skip_corrupt=False)


@needs_fashion_mnist
def test_fashion_mnist_real_data_sizes_and_labels():
    train, val = build("fashion_mnist", "train"), build("fashion_mnist", "val")
    assert len(train) == 60000 and len(val) == 10000 and train.num_classes == 10
    # Fashion-MNIST is balanced: 6,000 / 1,000 images per class.
    assert np.bincount(train.targets).tolist() == [6000] * 10
    assert np.bincount(val.targets).tolist() == [1000] * 10
    image, label = val[0]
    assert image.mode == "L" and image.size == (28, 28)
    assert label == 9 and val.classes[label] == "Ankle boot"  # the first test image is an ankle boot
    pixels = np.asarray(image)
    assert pixels.max() > 200 and (pixels == 0).mean() > 0.3  # a dark background with a bright object


@needs_fashion_mnist
def test_torchvision_fashion_mnist_matches_our_idx_reader(tmp_path):
    """torchvision's reader on an uncompressed copy gives the same images and labels (an independent reference)."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(os.path.join(FM_ROOT, name + ".gz"), "rb") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # present, never read for split val
        os.symlink(os.path.join(FM_ROOT, name + ".gz"), raw / name)
    ours = build("fashion_mnist", "val")
    theirs = build("torchvision_dataset", "val", data_path=str(tmp_path), dataset_class="FashionMNIST")
    assert theirs.targets == ours.targets and theirs.num_classes == 10
    for i in (0, 1, 4321, 9999):
        assert np.array_equal(np.asarray(theirs[i][0]), np.asarray(ours[i][0]))
    # Uncompressed files in another folder work for our reader too.
    plain = build("fashion_mnist", "val", data_path=str(raw))
    assert plain.targets[:50] == ours.targets[:50]


def test_fashion_mnist_truncated_idx_is_named(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    header = (2049).to_bytes(4, "big") + (10).to_bytes(4, "big")
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(header + labels.tobytes())
    images_header = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(images_header + bytes(28 * 28 * 9))  # one image short
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        build("fashion_mnist", "val", data_path=str(tmp_path))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(images_header + bytes(range(256)) * 30 + bytes(28 * 28 * 10 - 256 * 30))
    ds = build("fashion_mnist", "val", data_path=str(tmp_path))
    assert ds.targets == list(range(10)) and np.asarray(ds[0][0])[0, 5] == 5
    with pytest.raises(FileNotFoundError, match="train-images"):
        build("fashion_mnist", "train", data_path=str(tmp_path))


def test_torchvision_dataset_never_downloads_and_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py") as info:
        build("torchvision_dataset", "train", data_path=str(tmp_path), dataset_class="CIFAR10")
    assert "never downloads" in str(info.value) and str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing was fetched or created
    with pytest.raises(ValueError, match="dataset_class"):
        build("torchvision_dataset", data_path=str(tmp_path), dataset_class="ImageNet")
