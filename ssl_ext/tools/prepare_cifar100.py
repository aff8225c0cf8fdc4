"""CIFAR-100 python pickles -> PNG files + VISSL filelists.

    ssl-ext-run prepare-cifar100 --input ~/Downloads/cifar-100-python --output ~/datasets/cifar100

``<input>`` is the extracted ``cifar-100-python`` folder of the official archive:
``train`` and ``test`` (pickles with ``data`` (N, 3072) uint8 rows in R, G, B plane
order, ``fine_labels``, ``coarse_labels`` and ``filenames``) and ``meta``
(``fine_label_names``, ``coarse_label_names``). Images are written as PNG under
``<output>/images/<split>/<label name>/<filename>``; ``val`` is CIFAR's test set (as
in VISSL's CIFAR-100 benchmark). ``--labels coarse`` uses the 20 super-classes.
"""
import argparse
import os
import pickle
import sys

import numpy as np


from ssl_ext.tools.prepare_common import PrepareError, require, run, summarize, write_classes, write_filelist

SPLIT_FILES = {"train": "train", "val": "test"}


def unpickle(path):
    with open(require(path, "CIFAR pickle"), "rb") as f:
        try:
            data = pickle.load(f, encoding="bytes")
        except Exception as exc:  # a truncated or foreign file
            raise PrepareError(f"{path} is not a CIFAR python pickle: {exc}") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def write_images(rows, names, labels, class_names, folder):
    from PIL import Image

    images = np.asarray(rows, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    paths = []
    for image, name, label in zip(images, names, labels):
        name = name.decode() if isinstance(name, bytes) else str(name)
        target = os.path.join(folder, class_names[label], name)
        if not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Image.fromarray(image).save(target + ".tmp.png")
            os.replace(target + ".tmp.png", target)
        paths.append(target)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="the extracted cifar-100-python folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--labels", choices=("fine", "coarse"), default="fine")
    args = parser.parse_args(argv)
    meta = unpickle(os.path.join(args.input, "meta"))
    key = f"{args.labels}_label_names"
    if key not in meta:
        raise PrepareError(f"{args.input}/meta has no {key!r} (is this cifar-100-python?)")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]
    all_labels = {}
    for split, file in SPLIT_FILES.items():
        data = unpickle(os.path.join(args.input, file))
        missing = [k for k in ("data", f"{args.labels}_labels", "filenames") if k not in data]
        if missing:
            raise PrepareError(f"{args.input}/{file} lacks {missing} (is this cifar-100-python?)")
        labels = [int(x) for x in data[f"{args.labels}_labels"]]
        if np.asarray(data["data"]).shape[1:] != (3072,):
            raise PrepareError(f"{args.input}/{file}: data rows must have 3072 values (32x32x3), got {np.asarray(data['data']).shape}")
        paths = write_images(data["data"], data["filenames"], labels, class_names, os.path.join(args.output, "images", split))
        write_filelist(args.output, split, paths, labels)
        all_labels[split] = labels
    write_classes(args.output, class_names)
    return summarize(args.output, all_labels)


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
