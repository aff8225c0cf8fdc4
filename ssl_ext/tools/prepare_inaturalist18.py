"""iNaturalist 2018 (train2018.json / val2018.json, COCO-style) -> VISSL filelists.

    ssl-ext-run prepare-inaturalist18 --input /data/inat18 --output ~/datasets/inat18

``<input>`` holds ``train2018.json``, ``val2018.json`` and the images under the
relative paths their ``file_name`` fields give (``train_val2018/<kingdom>/<id>/<file>.jpg``).
Every image has one annotation; its ``category_id`` becomes the label, renumbered
densely in increasing id order (iNat18's ids already run 0..8141, so they are
kept). ``classes.json`` lists the category names in label order. 437,513 train
and 24,426 val images, 8,142 classes.
"""
import argparse
import json
import os
import sys


from ssl_ext.tools.prepare_common import PrepareError, require, run, summarize, write_classes, write_filelist


def load_split(json_path, image_root, check_files):
    with open(require(json_path, "annotation file")) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{json_path} is not valid JSON: {exc}") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise PrepareError(f"{json_path} has no {key!r} list (expected the iNaturalist COCO-style layout)")
    label_of = {}
    for ann in data["annotations"]:
        label_of[ann["image_id"]] = ann["category_id"]
    records = []
    for image in data["images"]:
        if image["id"] not in label_of:
            raise PrepareError(f"{json_path}: image {image['id']} ({image['file_name']}) has no annotation")
        path = os.path.join(image_root, image["file_name"])
        if check_files and not os.path.exists(path):
            raise PrepareError(f"{json_path}: image file {path} does not exist (is --input the dataset root?)")
        records.append((path, label_of[image["id"]]))
    return records, {c["id"]: c.get("name", str(c["id"])) for c in data["categories"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="folder with train2018.json, val2018.json and the images")
    parser.add_argument("--output", required=True)
    parser.add_argument("--no-check-files", action="store_true", help="do not check that every image file exists")
    args = parser.parse_args(argv)
    splits, categories = {}, {}
    for split, name in (("train", "train2018.json"), ("val", "val2018.json")):
        splits[split], cats = load_split(os.path.join(args.input, name), args.input, not args.no_check_files)
        categories.update(cats)
    dense = {cid: i for i, cid in enumerate(sorted(categories))}
    labels = {}
    for split, records in splits.items():
        unknown = sorted({c for _, c in records if c not in dense})
        if unknown:
            raise PrepareError(f"{split}: category ids {unknown[:5]} are not in the categories lists")
        labels[split] = [dense[c] for _, c in records]
        write_filelist(args.output, split, [p for p, _ in records], labels[split])
    write_classes(args.output, [categories[c] for c in sorted(categories)])
    return summarize(args.output, labels)


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
