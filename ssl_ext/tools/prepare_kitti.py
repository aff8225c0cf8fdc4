"""KITTI object labels -> VISSL filelists for VTAB's KITTI/Dist (closest vehicle distance).

    ssl-ext-run prepare-kitti --input /data/kitti --output ~/datasets/kitti_dist [--mapping-dir devkit/mapping]

VTAB's definition (Zhai et al. 2019, arXiv:1910.04867, task
closest_vehicle_distance): among the objects of type Car, Van or Truck, take the
smallest depth ``z`` of the 3-D location (metres, camera coordinates; 1000 when
there is no vehicle) and bin it at -100, 8, 20 and 999: the label is the index of
the last threshold below the depth, so 0: < 8 m, 1: 8-20 m, 2: > 20 m, 3: no vehicle.

``<input>`` holds KITTI's object training set: ``training/image_2/NNNNNN.png`` and
``training/label_2/NNNNNN.txt`` (one object per line: type, truncated, occluded,
alpha, 2-D box (4), dimensions (3), location x y z, rotation_y). KITTI's test
images have no labels, so val comes out of training. VTAB splits by drive so
frames of one video never straddle train and val: with ``--mapping-dir`` (the
devkit's ``train_rand.txt`` and ``train_mapping.txt``) whole drives go to val, else
a seeded random ``--val-fraction`` of the images does.
"""
import argparse
import bisect
import os
import random
import sys


from ssl_ext.tools.prepare_common import PrepareError, require, run, summarize, write_classes, write_filelist

VEHICLES = ("Car", "Van", "Truck")
NO_VEHICLE_DEPTH = 1000.0
THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
CLASS_NAMES = ["closer than 8 m", "8 to 20 m", "farther than 20 m", "no vehicle"]


def closest_vehicle_label(label_path):
    depths = [NO_VEHICLE_DEPTH]
    with open(label_path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 15:
                raise PrepareError(f"{label_path}:{number}: a KITTI object line has 15 fields, got {len(fields)}")
            if fields[0] in VEHICLES:
                depths.append(float(fields[13]))
    return bisect.bisect_left(THRESHOLDS, min(depths)) - 1


def drives_of(mapping_dir, frames):
    """Frame id -> drive name from the devkit's train_rand.txt (1-based line numbers) and train_mapping.txt."""
    rand_path = require(os.path.join(mapping_dir, "train_rand.txt"), "devkit file")
    mapping_path = require(os.path.join(mapping_dir, "train_mapping.txt"), "devkit file")
    with open(rand_path) as f:
        order = [int(x) for x in f.read().replace(",", " ").split()]
    with open(mapping_path) as f:
        mapping = [line.split() for line in f if line.strip()]
    drives = {}
    for frame in frames:
        index = int(frame)
        if index >= len(order) or order[index] - 1 >= len(mapping):
            raise PrepareError(f"frame {frame} is not covered by {rand_path} / {mapping_path}")
        drives[frame] = mapping[order[index] - 1][1]
    return drives


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="KITTI object folder with training/image_2 and training/label_2")
    parser.add_argument("--output", required=True)
    parser.add_argument("--mapping-dir", default=None, help="devkit mapping folder (train_rand.txt, train_mapping.txt)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="fraction of drives (or images) for val")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        raise PrepareError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    label_dir = require(os.path.join(args.input, "training", "label_2"), "label folder")
    image_dir = require(os.path.join(args.input, "training", "image_2"), "image folder")
    frames = sorted(os.path.splitext(f)[0] for f in os.listdir(label_dir) if f.endswith(".txt"))
    if not frames:
        raise PrepareError(f"{label_dir} has no NNNNNN.txt label files")
    labels = {frame: closest_vehicle_label(os.path.join(label_dir, frame + ".txt")) for frame in frames}
    images = {}
    for frame in frames:
        images[frame] = require(os.path.join(image_dir, frame + ".png"), "image of label file " + frame + ".txt")
    rng = random.Random(args.seed)
    if args.mapping_dir:
        drive = drives_of(args.mapping_dir, frames)
        names = sorted(set(drive.values()))
        val_drives = set(rng.sample(names, max(1, round(args.val_fraction * len(names)))))
        in_val = {frame: drive[frame] in val_drives for frame in frames}
    else:
        chosen = set(rng.sample(frames, max(1, round(args.val_fraction * len(frames)))))
        in_val = {frame: frame in chosen for frame in frames}
    out = {}
    for split, wanted in (("train", False), ("val", True)):
        chosen = [f for f in frames if in_val[f] == wanted]
        out[split] = [labels[f] for f in chosen]
        write_filelist(args.output, split, [images[f] for f in chosen], out[split])
    write_classes(args.output, CLASS_NAMES)
    return summarize(args.output, out)


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
