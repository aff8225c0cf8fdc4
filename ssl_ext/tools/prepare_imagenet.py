"""ImageNet-1k (or any ImageFolder-style dataset) -> VISSL filelists.

    ssl-ext-run prepare-imagenet --input /data/imagenet --output ~/datasets/imagenet1k

Expects ``<input>/train/<wnid>/*.JPEG``. For val, either ``<input>/val/<wnid>/*.JPEG``
(class folders) or the flat ``<input>/val/*.JPEG`` of the official archive together
with ``--val-solution LOC_val_solution.csv`` (the Kaggle/ILSVRC CSV: ``ImageId,PredictionString``
whose first token is the wnid). Class ids follow the sorted train folder names
(torchvision's ImageFolder order); ``classes.json`` lists them.
"""
import argparse
import csv
import os
import sys


from ssl_ext.tools.prepare_common import PrepareError, is_image, require, run, summarize, write_classes, write_filelist


def scan_class_folders(folder, classes=None):
    found = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    classes = classes or found
    index = {c: i for i, c in enumerate(classes)}
    unknown = [d for d in found if d not in index]
    if unknown:
        raise PrepareError(f"{folder} has class folders not in train: {unknown[:5]}")
    paths, labels = [], []
    for name in found:
        for file in sorted(os.listdir(os.path.join(folder, name))):
            if is_image(file):
                paths.append(os.path.join(folder, name, file))
                labels.append(index[name])
    return classes, paths, labels


def read_val_solution(csv_path, val_folder, classes):
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    with open(require(csv_path, "--val-solution"), newline="") as f:
        for row in csv.DictReader(f):
            if "ImageId" not in row or "PredictionString" not in row:
                raise PrepareError(f"{csv_path}: expected columns ImageId,PredictionString, got {list(row)}")
            wnid = row["PredictionString"].split()[0]
            if wnid not in index:
                raise PrepareError(f"{csv_path}: image {row['ImageId']} has class {wnid!r} with no train folder")
            candidates = [os.path.join(val_folder, row["ImageId"] + ext) for ext in (".JPEG", ".jpeg", ".jpg", ".png")]
            path = next((p for p in candidates if os.path.exists(p)), None)
            if path is None:
                raise PrepareError(f"{csv_path}: no image file for {row['ImageId']} in {val_folder}")
            paths.append(path)
            labels.append(index[wnid])
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return [paths[i] for i in order], [labels[i] for i in order]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="folder with train/ and val/")
    parser.add_argument("--output", required=True, help="where the filelists go")
    parser.add_argument("--val-solution", default=None, help="CSV with the labels of a flat val/ folder")
    args = parser.parse_args(argv)
    train_dir = require(os.path.join(args.input, "train"), "train folder")
    classes, train_paths, train_labels = scan_class_folders(train_dir)
    if not classes:
        raise PrepareError(f"{train_dir} has no class folders (expected train/<class>/<image>)")
    val_dir = require(os.path.join(args.input, "val"), "val folder")
    if args.val_solution:
        val_paths, val_labels = read_val_solution(args.val_solution, val_dir, classes)
    else:
        _, val_paths, val_labels = scan_class_folders(val_dir, classes)
        if not val_paths and any(is_image(f) for f in os.listdir(val_dir)):
            raise PrepareError(f"{val_dir} holds images but no class folders: pass --val-solution LOC_val_solution.csv")
    write_filelist(args.output, "train", train_paths, train_labels)
    write_filelist(args.output, "val", val_paths, val_labels)
    write_classes(args.output, classes)
    return summarize(args.output, {"train": train_labels, "val": val_labels})


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
