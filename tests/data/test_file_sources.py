"""disk_folder and disk_filelist: real files, right labels, unreadable images named or skipped and counted."""
import os

import numpy as np
import pytest
from PIL import Image

from registry import build_data_source
from ssl_ext.data.image_loading import CorruptImageError

CLASSES = ["cat", "dog", "eel"]


def build(name, split="train", data_path="", dataset_name="", skip_corrupt=False, **params):
    return build_data_source({"NAME": name, "PARAMS": params}, split=split, data_path=data_path,
                             dataset_name=dataset_name, skip_corrupt=skip_corrupt)


def pixel_value(label, i):
    return 10 + 40 * label + i


def write_folder(root, per_class=3, fmt="png"):
    """<root>/<class>/<i>.<fmt>, each a uniform image whose value encodes (label, i)."""
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            path = root / name / f"{i}.{fmt}"
            Image.fromarray(np.full((6, 5, 3), pixel_value(label, i), dtype=np.uint8)).save(path)
            paths.append(str(path))
            labels.append(label)
    return paths, labels


def corrupt_files(root):
    """A truncated PNG and a text file with an image extension, both under class 'dog'."""
    good = root / "dog" / "0.png"
    truncated = root / "dog" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    not_image = root / "dog" / "notes.jpg"
    not_image.write_text("not an image")
    return {str(truncated), str(not_image)}


def test_disk_folder_reads_images_and_labels(tmp_path):
    write_folder(tmp_path)
    ds = build("disk_folder", data_path=str(tmp_path))
    assert ds.classes == CLASSES and ds.num_classes == 3 and len(ds) == 9
    for i in range(len(ds)):
        image, label = ds[i]
        index_in_class = int(os.path.splitext(os.path.basename(ds.samples[i][0]))[0])
        assert label == CLASSES.index(os.path.basename(os.path.dirname(ds.samples[i][0])))
        assert image.mode == "RGB" and image.size == (5, 6)
        assert np.asarray(image)[0, 0, 0] == pixel_value(label, index_in_class)
    assert ds.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert build("disk_folder", data_path=str(tmp_path), image_mode="L")[0][0].mode == "L"


def test_disk_folder_pinned_classes_keep_labels_when_a_split_lacks_a_class(tmp_path):
    write_folder(tmp_path)
    for f in (tmp_path / "dog").iterdir():
        f.unlink()
    (tmp_path / "dog").rmdir()
    ds = build("disk_folder", "val", data_path=str(tmp_path), classes=CLASSES)
    assert sorted(set(ds.targets)) == [0, 2] and ds.num_classes == 3
    with pytest.raises(ValueError, match="not in the given classes"):
        build("disk_folder", data_path=str(tmp_path), classes=["cat"])


def test_unreadable_image_fails_naming_the_file(tmp_path):
    write_folder(tmp_path)
    bad = corrupt_files(tmp_path)
    ds = build("disk_folder", data_path=str(tmp_path))
    failures = set()
    for i in range(len(ds)):
        try:
            ds[i]
        except CorruptImageError as exc:
            assert exc.path in str(exc) and "SKIP_CORRUPT" in str(exc)
            failures.add(exc.path)
    assert failures == bad


def test_skip_corrupt_drops_and_counts_never_substitutes(tmp_path):
    paths, _ = write_folder(tmp_path)
    bad = corrupt_files(tmp_path)
    ds = build("disk_folder", data_path=str(tmp_path), skip_corrupt=True)
    assert ds.num_skipped == 2 and {path for path, _ in ds.skipped_files} == bad
    assert len(ds) == 9 and sorted(p for p, _ in ds.samples) == sorted(paths)
    assert all(ds[i][1] == ds.targets[i] for i in range(len(ds)))


def test_truncated_jpeg_is_caught_by_the_scan(tmp_path):
    write_folder(tmp_path, fmt="jpg")
    jpeg = tmp_path / "eel" / "0.jpg"
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:-600])  # header intact: PIL opens it, decoding fails
    with pytest.raises(CorruptImageError, match="0.jpg"):
        build("disk_folder", data_path=str(tmp_path))[6]
    assert build("disk_folder", data_path=str(tmp_path), skip_corrupt=True).skipped_files[0][0] == str(jpeg)


def test_missing_paths_fail_naming_key_and_path(tmp_path):
    missing = str(tmp_path / "nope")
    for name in ("disk_folder", "disk_filelist", "torchvision_dataset", "fashion_mnist"):
        with pytest.raises(FileNotFoundError, match=r"config\.DATA\.VAL\.DATA_PATHS") as info:
            build(name, "val", data_path=missing)
        assert missing in str(info.value)
    with pytest.raises(ValueError, match=r"config\.DATA\.TRAIN\.DATA_PATHS"):
        build("disk_folder")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        build("disk_folder", data_path=str(tmp_path))


def write_filelist(tmp_path, paths, labels, prefix="train"):
    images, label_file = tmp_path / f"{prefix}_images.npy", tmp_path / f"{prefix}_labels.npy"
    np.save(images, np.array(paths))
    np.save(label_file, np.array(labels))
    return str(images), str(label_file)


def test_disk_filelist_three_ways_to_find_the_labels(tmp_path):
    paths, labels = write_folder(tmp_path / "img")
    images, label_file = write_filelist(tmp_path, paths, labels)
    sibling = build("disk_filelist", data_path=images)
    folder = build("disk_filelist", data_path=str(tmp_path))
    explicit = build("disk_filelist", data_path=images, labels_path=label_file, num_classes=5)
    for ds in (sibling, folder, explicit):
        assert ds.targets == labels and len(ds) == 9
        assert np.asarray(ds[4][0])[0, 0, 0] == pixel_value(1, 1)
    assert sibling.num_classes == 3 and explicit.num_classes == 5


def test_disk_filelist_relative_paths_and_bad_files(tmp_path):
    paths, labels = write_folder(tmp_path / "img")
    relative = [os.path.relpath(p, tmp_path / "img") for p in paths]
    images, _ = write_filelist(tmp_path, relative, labels, prefix="val")
    ds = build("disk_filelist", "val", data_path=images, image_root=str(tmp_path / "img"))
    assert ds[8][1] == 2 and np.asarray(ds[8][0])[0, 0, 0] == pixel_value(2, 2)
    np.save(tmp_path / "val_labels.npy", np.array(labels[:-1]))
    with pytest.raises(ValueError, match="8 labels"):
        build("disk_filelist", "val", data_path=images)
    np.save(tmp_path / "obj_images.npy", np.array(paths, dtype=object), allow_pickle=True)
    np.save(tmp_path / "obj_labels.npy", np.array(labels))
    with pytest.raises(ValueError, match="allow_pickle"):
        build("disk_filelist", data_path=str(tmp_path / "obj_images.npy"))
    assert len(build("disk_filelist", data_path=str(tmp_path / "obj_images.npy"), allow_pickle=True)) == 9
    with pytest.raises(FileNotFoundError, match="labels"):
        np.save(tmp_path / "lonely_images.npy", np.array(paths))
        build("disk_filelist", data_path=str(tmp_path / "lonely_images.npy"))


def test_disk_filelist_missing_image_is_unreadable_and_skippable(tmp_path):
    paths, labels = write_folder(tmp_path / "img")
    images, _ = write_filelist(tmp_path, paths + [str(tmp_path / "gone.png")], labels + [0])
    with pytest.raises(CorruptImageError, match="gone.png"):
        build("disk_filelist", data_path=images)[9]
    ds = build("disk_filelist", data_path=images, skip_corrupt=True)
    assert len(ds) == 9 and ds.num_skipped == 1
