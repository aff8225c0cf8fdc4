"""Dataset-preparation tools on miniature fixtures in each dataset's real on-disk format."""
import csv
import importlib.util
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")


def tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filelist(out, split):
    images = np.load(os.path.join(out, f"{split}_images.npy"), allow_pickle=False)
    labels = np.load(os.path.join(out, f"{split}_labels.npy"), allow_pickle=False)
    assert images.dtype.kind == "U" and labels.dtype == np.int64 and images.shape == labels.shape
    assert all(os.path.isabs(p) and os.path.exists(p) for p in images)
    return [os.path.basename(p) for p in images], labels.tolist(), list(images)


def image(path, value=0, size=(4, 4)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def test_imagenet_class_folders_and_flat_val_with_solution_csv(tmp_path):
    root = tmp_path / "imagenet"
    for wnid, files in {"n01440764": ["a.JPEG", "b.JPEG"], "n01443537": ["c.JPEG"], "n09999999": ["d.png"]}.items():
        for f in files:
            image(str(root / "train" / wnid / f))
    (root / "train" / "n01440764" / "notes.txt").write_text("not an image")
    image(str(root / "val" / "n01443537" / "v1.JPEG"))
    image(str(root / "val" / "n09999999" / "v2.JPEG"))
    out = tmp_path / "out"
    tool("prepare_imagenet").main(["--input", str(root), "--output", str(out)])
    assert filelist(out, "train")[:2] == (["a.JPEG", "b.JPEG", "c.JPEG", "d.png"], [0, 0, 1, 2])
    assert filelist(out, "val")[:2] == (["v1.JPEG", "v2.JPEG"], [1, 2])
    assert json.loads((out / "classes.json").read_text()) == ["n01440764", "n01443537", "n09999999"]

    # The official flat val folder plus the ILSVRC/Kaggle solution CSV.
    (root / "val2").mkdir()
    image(str(root / "val2" / "ILSVRC2012_val_00000002.JPEG"))
    image(str(root / "val2" / "ILSVRC2012_val_00000001.JPEG"))
    with open(tmp_path / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerow(["ILSVRC2012_val_00000002", "n09999999 1 2 3 4"])
        writer.writerow(["ILSVRC2012_val_00000001", "n01440764 5 6 7 8 n01440764 1 1 2 2"])
    os.rename(root / "val", tmp_path / "val_folders")
    os.rename(root / "val2", root / "val")
    tool("prepare_imagenet").main(["--input", str(root), "--output", str(out), "--val-solution", str(tmp_path / "LOC_val_solution.csv")])
    assert filelist(out, "val")[:2] == (["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"], [0, 2])


def test_imagenet_output_loads_with_the_disk_filelist_source(tmp_path):
    import registry

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        image(str(root / split / "cat" / "x.png"), value=10)
        image(str(root / split / "dog" / "y.png"), value=200)
    tool("prepare_imagenet").main(["--input", str(root), "--output", str(tmp_path / "out")])
    source = registry.build_data_source(
        {"NAME": "disk_filelist"}, split="val", data_path=str(tmp_path / "out"), dataset_name="", skip_corrupt=False
    )
    assert len(source) == 2 and source.targets == [0, 1]
    picture, label = source[1]
    assert label == 1 and np.asarray(picture)[0, 0].tolist() == [200, 200, 200]


def test_inaturalist18_json(tmp_path):
    root = tmp_path / "inat"
    splits = {
        "train2018.json": [(1, "train_val2018/Plantae/5/a.jpg", 5), (2, "train_val2018/Aves/0/b.jpg", 0), (3, "train_val2018/Plantae/5/c.jpg", 5)],
        "val2018.json": [(9, "train_val2018/Aves/2/d.jpg", 2)],
    }
    categories = [{"id": i, "name": f"species {i}", "kingdom": "k"} for i in (0, 2, 5)]
    for name, records in splits.items():
        for _, path, _ in records:
            image(str(root / path))
        payload = {
            "images": [{"id": i, "file_name": p, "width": 4, "height": 4} for i, p, _ in records],
            "annotations": [{"id": 100 + i, "image_id": i, "category_id": c} for i, _, c in records],
            "categories": categories,
            "info": {}, "licenses": [],
        }
        (root / name).write_text(json.dumps(payload))
    out = tmp_path / "out"
    tool("prepare_inaturalist18").main(["--input", str(root), "--output", str(out)])
    assert filelist(out, "train")[:2] == (["a.jpg", "b.jpg", "c.jpg"], [2, 0, 2])  # ids 0, 2, 5 -> dense 0, 1, 2
    assert filelist(out, "val")[:2] == (["d.jpg"], [1])
    assert json.loads((out / "classes.json").read_text()) == ["species 0", "species 2", "species 5"]
    os.remove(root / "train_val2018/Aves/2/d.jpg")
    with pytest.raises(Exception, match="d.jpg does not exist"):
        tool("prepare_inaturalist18").main(["--input", str(root), "--output", str(out)])


def test_places205_list_files(tmp_path):
    root = tmp_path / "places"
    images = root / "data" / "vision" / "torralba" / "deeplearning" / "images256"
    lists = root / "trainvalsplit_places205"
    lists.mkdir(parents=True)
    rows = {"train": [("a/abbey/gsun_1.jpg", 0), ("b/bar/gsun_2.jpg", 1), ("a/abbey/gsun_3.jpg", 0)], "val": [("b/bar/gsun_4.jpg", 1)]}
    for split, entries in rows.items():
        for path, _ in entries:
            image(str(images / path))
        (lists / f"{split}_places205.csv").write_text("".join(f"{p} {l}\n" for p, l in entries))
    out = tmp_path / "out"
    tool("prepare_places205").main(["--input", str(root), "--output", str(out)])
    assert filelist(out, "train")[:2] == (["gsun_1.jpg", "gsun_2.jpg", "gsun_3.jpg"], [0, 1, 0])
    assert filelist(out, "val")[:2] == (["gsun_4.jpg"], [1])
    assert json.loads((out / "classes.json").read_text()) == ["abbey", "bar"]
    (lists / "val_places205.csv").write_text("b/bar/gsun_4.jpg one\n")
    with pytest.raises(Exception, match=r"val_places205.csv:1: expected '<image path> <int label>'"):
        tool("prepare_places205").main(["--input", str(root), "--output", str(out)])


def test_cifar100_pickles_to_png(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for file, n in (("train", 5), ("test", 2)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        arrays[file] = data
        payload = {
            b"data": data, b"fine_labels": [i % 3 for i in range(n)], b"coarse_labels": [0] * n,
            b"filenames": [f"img_{file}_{i}.png".encode() for i in range(n)], b"batch_label": b"x",
        }
        with open(root / file, "wb") as f:
            pickle.dump(payload, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"bear", b"cloud"], b"coarse_label_names": [b"fruit"]}, f)
    out = tmp_path / "out"
    tool("prepare_cifar100").main(["--input", str(root), "--output", str(out)])
    names, labels, paths = filelist(out, "train")
    assert labels == [0, 1, 2, 0, 1] and names[1] == "img_train_1.png" and "/bear/" in paths[1]
    # Rows are R, G, B planes of 32x32: the PNG must hold exactly those pixels.
    expected = arrays["train"][1].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(Image.open(paths[1])), expected)
    assert filelist(out, "val")[1] == [0, 1]
    tool("prepare_cifar100").main(["--input", str(root), "--output", str(tmp_path / "coarse"), "--labels", "coarse"])
    assert filelist(tmp_path / "coarse", "train")[1] == [0] * 5


def clevr_scene(name, depths):
    return {"image_filename": name, "split": "x", "objects": [{"pixel_coords": [10, 20, d], "shape": "cube"} for d in depths]}


def test_clevr_count_and_distance_follow_vtab(tmp_path):
    root = tmp_path / "CLEVR_v1.0"
    scenes = {
        "train": [clevr_scene("t0.png", [8.0, 12.0, 13.0]), clevr_scene("t1.png", [9.2] * 10), clevr_scene("t2.png", [10.0, 50.0, 7.99, 11.0])],
        "val": [clevr_scene("v0.png", [8.25, 9.7, 30.0, 40.0, 50.0]), clevr_scene("v1.png", [10.01, 11.0, 12.0])],
    }
    for split, entries in scenes.items():
        for s in entries:
            image(str(root / "images" / split / s["image_filename"]))
        (root / "scenes").mkdir(exist_ok=True)
        (root / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"info": {}, "scenes": entries}))
    prepare = tool("prepare_clevr")
    prepare.main(["--input", str(root), "--task", "count", "--output", str(tmp_path / "count")])
    assert filelist(tmp_path / "count", "train")[:2] == (["t0.png", "t1.png", "t2.png"], [0, 7, 1])
    assert filelist(tmp_path / "count", "val")[1] == [2, 0]
    prepare.main(["--input", str(root), "--task", "distance", "--output", str(tmp_path / "dist")])
    # Closest depths 8.0, 9.2, 7.99 / 8.25, 10.01 against thresholds 0, 8, 8.5, 9, 9.5, 10, 100 (last one strictly below).
    assert filelist(tmp_path / "dist", "train")[1] == [0, 3, 0]
    assert filelist(tmp_path / "dist", "val")[1] == [1, 5]
    assert len(json.loads((tmp_path / "dist" / "classes.json").read_text())) == 6
    scenes["val"].append(clevr_scene("v2.png", [9.0] * 2))
    (root / "scenes" / "CLEVR_val_scenes.json").write_text(json.dumps({"scenes": scenes["val"]}))
    with pytest.raises(Exception, match="2 objects; VTAB's count task expects 3 to 10"):
        prepare.main(["--input", str(root), "--task", "count", "--output", str(tmp_path / "count")])


def kitti_line(kind, z):
    return f"{kind} 0.00 0 -1.57 100.0 150.0 200.0 250.0 1.50 1.60 3.90 1.00 1.70 {z} -1.55\n"


def test_kitti_closest_vehicle_distance_follows_vtab(tmp_path):
    root = tmp_path / "kitti"
    objects = {
        "000000": [("Car", 5.0), ("Pedestrian", 2.0)],        # closest vehicle 5 m -> 0
        "000001": [("Van", 12.0), ("Truck", 30.0)],           # 12 m -> 1
        "000002": [("Car", 45.5), ("DontCare", -1000.0)],     # 45.5 m -> 2 (DontCare is no vehicle)
        "000003": [("Cyclist", 4.0)],                         # no vehicle -> 3
        "000004": [("Car", 20.0)],                            # 20 m: not above 20 -> 1
        "000005": [],                                         # empty frame -> 3
    }
    for frame, entries in objects.items():
        image(str(root / "training" / "image_2" / f"{frame}.png"))
        (root / "training" / "label_2").mkdir(parents=True, exist_ok=True)
        (root / "training" / "label_2" / f"{frame}.txt").write_text("".join(kitti_line(k, z) for k, z in entries))
    prepare = tool("prepare_kitti")
    out = tmp_path / "out"
    prepare.main(["--input", str(root), "--output", str(out), "--val-fraction", "0.34"])
    train, val = filelist(out, "train"), filelist(out, "val")
    merged = dict(zip(train[0] + val[0], train[1] + val[1]))
    assert merged == {"000000.png": 0, "000001.png": 1, "000002.png": 2, "000003.png": 3, "000004.png": 1, "000005.png": 3}
    assert len(val[0]) == 2

    # With the devkit mapping, frames of one drive stay together.
    mapping = tmp_path / "mapping"
    mapping.mkdir()
    (mapping / "train_rand.txt").write_text("3,1,2,6,4,5\n")
    drives = ["d_0001", "d_0001", "d_0002", "d_0002", "d_0003", "d_0003"]
    (mapping / "train_mapping.txt").write_text("".join(f"2011_09_26 {d} {i:010d}\n" for i, d in enumerate(drives)))
    prepare.main(["--input", str(root), "--output", str(out), "--mapping-dir", str(mapping), "--val-fraction", "0.34"])
    drive_of = {f"{i:06d}.png": drives[int(r) - 1] for i, r in enumerate("3,1,2,6,4,5".split(","))}
    val_drives = {drive_of[f] for f in filelist(out, "val")[0]}
    train_drives = {drive_of[f] for f in filelist(out, "train")[0]}
    assert len(val_drives) == 1 and not val_drives & train_drives


def test_command_line_reports_bad_input_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "prepare_clevr.py"), "--input", str(tmp_path / "missing"), "--task", "count", "--output", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "error: scene file" in result.stderr and "CLEVR_train_scenes.json" in result.stderr and "does not exist" in result.stderr
