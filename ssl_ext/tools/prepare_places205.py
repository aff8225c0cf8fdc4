"""Places205 list files -> VISSL filelists.

    ssl-ext-run prepare-places205 --input /data/places205 --output ~/datasets/places205

The official release has ``trainvalsplit_places205/train_places205.csv`` and
``val_places205.csv``, one ``<relative image path> <label>`` per line (e.g.
``a/abbey/gsun_0003586c3eedd97457b2d729ebfe18b5.jpg 0``), and the images under
``data/vision/torralba/deeplearning/images256/``. ``--list-dir`` and ``--image-root``
override those two locations. Labels are kept as given (0..204); ``classes.json``
takes each class name from its images' folder (``a/abbey`` -> ``abbey``).
"""
import argparse
import os
import sys


from ssl_ext.tools.prepare_common import PrepareError, require, run, summarize, write_classes, write_filelist

DEFAULT_LIST_DIR = "trainvalsplit_places205"
DEFAULT_IMAGE_ROOT = os.path.join("data", "vision", "torralba", "deeplearning", "images256")


def read_list(path, image_root, check_files):
    paths, labels, names = [], [], {}
    with open(require(path, "list file")) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise PrepareError(f"{path}:{number}: expected '<image path> <int label>', got {line!r}")
            relative, label = parts[0], int(parts[1])
            full = os.path.join(image_root, relative)
            if check_files and not os.path.exists(full):
                raise PrepareError(f"{path}:{number}: image {full} does not exist (check --image-root)")
            paths.append(full)
            labels.append(label)
            names.setdefault(label, os.path.basename(os.path.dirname(relative)))
    return paths, labels, names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="the Places205 release folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--list-dir", default=None, help=f"folder of the CSV lists (default <input>/{DEFAULT_LIST_DIR})")
    parser.add_argument("--image-root", default=None, help=f"root of the relative image paths (default <input>/{DEFAULT_IMAGE_ROOT})")
    parser.add_argument("--no-check-files", action="store_true")
    args = parser.parse_args(argv)
    list_dir = args.list_dir or os.path.join(args.input, DEFAULT_LIST_DIR)
    image_root = args.image_root or os.path.join(args.input, DEFAULT_IMAGE_ROOT)
    lists, names = {}, {}
    for split in ("train", "val"):
        paths, split_labels, split_names = read_list(os.path.join(list_dir, f"{split}_places205.csv"), image_root, not args.no_check_files)
        lists[split] = (paths, split_labels)
        names.update(split_names)
    if not names or sorted(names) != list(range(max(names) + 1)):
        raise PrepareError(f"labels in {list_dir} must be 0..C-1 with no gap, got {sorted(names)[:10]}...")
    for split, (paths, split_labels) in lists.items():
        write_filelist(args.output, split, paths, split_labels)
    labels = {split: split_labels for split, (_, split_labels) in lists.items()}
    write_classes(args.output, [names[i] for i in range(len(names))])
    return summarize(args.output, labels)


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
