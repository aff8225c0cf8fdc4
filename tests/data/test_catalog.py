"""The dataset catalog: built-in entries, user files (YAML/JSON) adding and overriding names, clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from registry import build_data_source
from ssl_ext.data import catalog


@pytest.fixture(autouse=True)
def fresh_catalog():
    catalog.clear_user_catalogs()
    yield
    catalog.clear_user_catalogs()


def test_builtin_catalog_has_fashion_mnist_at_the_debian_path():
    assert catalog.catalog_paths("fashion_mnist", "train") == ["/usr/share/datasets/fashion-mnist"]
    assert "cifar10" in catalog.catalog()


def test_user_yaml_adds_an_entry_used_by_a_source(tmp_path):
    folder = tmp_path / "val_images"
    (folder / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / "a" / "x.png")
    user = tmp_path / "mine.yaml"
    user.write_text(f"my_set:\n  val: {folder}\n  train: [{tmp_path}/a.npy, {tmp_path}/b.npy]\n")
    catalog.add_catalog_file(str(user))
    assert catalog.catalog_paths("my_set", "train") == [f"{tmp_path}/a.npy", f"{tmp_path}/b.npy"]
    ds = build_data_source({"NAME": "disk_folder"}, split="val", data_path="", dataset_name="my_set", skip_corrupt=False)
    assert len(ds) == 1 and ds.classes == ["a"]
    # An explicit DATA_PATHS entry wins over the catalog.
    with pytest.raises(FileNotFoundError, match="DATA_PATHS"):
        build_data_source({"NAME": "disk_folder"}, split="val", data_path=str(tmp_path / "x"), dataset_name="my_set",
                          skip_corrupt=False)


def test_user_json_overrides_a_builtin_and_missing_catalog_path_names_the_entry(tmp_path):
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"fashion_mnist": {"train": str(tmp_path / "fm"), "val": str(tmp_path / "fm")}}))
    catalog.add_catalog_file(str(user))
    assert catalog.catalog_paths("fashion_mnist", "val") == [str(tmp_path / "fm")]
    with pytest.raises(FileNotFoundError, match=r"dataset catalog entry 'fashion_mnist' \(val\)") as info:
        build_data_source({"NAME": "fashion_mnist"}, split="val", data_path="", dataset_name="fashion_mnist", skip_corrupt=False)
    assert str(tmp_path / "fm") in str(info.value)


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    user = tmp_path / "c.yaml"
    user.write_text("x:\n  train: ~/data\n")
    catalog.add_catalog_file(str(user))
    assert catalog.catalog_paths("x", "train") == [str(tmp_path / "data")]


def test_unknown_names_and_splits_are_explained(tmp_path):
    with pytest.raises(KeyError, match="Did you mean 'cifar10'") as info:
        catalog.catalog_paths("cifar_10", "train")
    assert "DATASET_CATALOG" in str(info.value)
    user = tmp_path / "c.yaml"
    user.write_text("only_train:\n  train: /x\n")
    catalog.add_catalog_file(str(user))
    with pytest.raises(KeyError, match="has no 'val' split"):
        catalog.catalog_paths("only_train", "val")


@pytest.mark.parametrize(
    "text,match",
    [("[1, 2]", "must map dataset names"), ("a: {train: 3}", "a.train must be a path"), ("a: [x]", "must map splits"),
     ("a: {train: [", "not valid YAML")],
)
def test_malformed_catalog_files_name_the_file(tmp_path, text, match):
    user = tmp_path / "bad.yaml"
    user.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        catalog.add_catalog_file(str(user))
    assert str(user) in str(info.value)
    with pytest.raises(FileNotFoundError, match="DATASET_CATALOG"):
        catalog.add_catalog_file(str(tmp_path / "absent.json"))
